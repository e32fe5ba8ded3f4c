// Alarm detail: the person's pseudonymous reference and care notes, the device's battery
// and last-seen, and the recent track drawn against the person's safe zones.

import { escalationText, severityBadge, stateBadge, unitOf } from "./board.js";
import { h } from "./dom.js";
import { formatTime, formatTimeAgo, getTimeZone } from "./format.js";
import { count, getLang, label, t } from "./i18n.js";
import { drawTrack } from "./map.js";

function row(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

/** A moment as <time>: the tenant's local time, with how long ago when ``ago``. */
function when(iso, { id = null, ago = false } = {}) {
  if (!iso) return h("span", { id }, t("never"));
  return h("time", { datetime: iso, id, class: ago ? "ago" : null },
    ago ? formatTimeAgo(iso, getLang()) : formatTime(iso));
}

/** Why the alarm was raised, in words: a lock's refusal, a silent device's cause, the
 * blood pressure limits breached. Null when the alarm carries no reason. */
function reasonText(detail) {
  if (!detail) return null;
  const parts = [];
  if (typeof detail.reason === "string") parts.push(label("reason", detail.reason));
  if (Array.isArray(detail.breaches)) parts.push(...detail.breaches.map((b) => label("breach", b)));
  return parts.length ? parts.join(", ") : null;
}

/**
 * Render the detail ``data`` (as /api/v1/console/alarms/{id} returns it) into ``root``;
 * ``mapTiles``: the map tile configuration from /api/v1/console/me, or null for none.
 */
export function renderDetail(root, data, actions, mapTiles = null) {
  const { alarm, person, device, safe_zones: zones, track } = data;
  const reason = reasonText(alarm.detail);
  const head = h("div", { class: "detail-head", dataset: { alarmId: alarm.alarm_id, state: alarm.state } },
    h("h3", { class: "detail-kind" }, label("kind", alarm.kind)),
    severityBadge(alarm),
    stateBadge(alarm),
    h("div", { class: "detail-actions" },
      alarm.state === "raised"
        ? h("button", { type: "button", class: "act ack", id: "detail-ack", onclick: () => actions.ack(alarm.alarm_id) }, t("act.ack"))
        : null,
      alarm.state !== "resolved"
        ? h("button", { type: "button", class: "act resolve", id: "detail-resolve", onclick: () => actions.resolve(alarm.alarm_id) }, t("act.resolve"))
        : null));

  const facts = h("dl", { class: "facts" },
    row(t("detail.person"), h("strong", { id: "detail-person" }, person ? person.ref : alarm.person_ref || "–")),
    row(t("detail.notes"), person
      ? h("p", { class: "notes", id: "detail-notes" }, person.care_notes || t("detail.no_notes"))
      : h("p", { class: "notes" }, t("detail.no_person"))),
    // a unit's shared device (docs/units.md): where to go
    unitOf(alarm) ? row(t("detail.unit"), h("strong", { id: "detail-unit" }, unitOf(alarm).name || unitOf(alarm).id)) : null,
    row(t("detail.device"), alarm.device_id, device ? ` · ${label("device_type", device.device_type)}` : ""),
    row(t("detail.battery"), h("span", { id: "detail-battery" },
      device && device.battery_percent !== null ? `${device.battery_percent} %` : t("unknown"))),
    row(t("detail.last_seen"), when(device && device.last_seen, { id: "detail-last-seen", ago: true })),
    row(t("detail.online"), device && device.online !== null ? t(device.online ? "yes" : "no") : t("unknown")),
    reason ? row(t("detail.reason"), h("span", { id: "detail-reason" }, reason)) : null,
    row(t("detail.raised"), when(alarm.raised_at, { id: "detail-raised", ago: true })),
    row(t("detail.last"), when(alarm.last_at, { id: "detail-last", ago: true })),
    row(t("col.occurrences"), String(alarm.occurrences)),
    row(t("col.escalation"), escalationText(alarm)),
    alarm.acknowledged_by
      ? row(t("detail.acknowledged"), `${alarm.acknowledged_by}, `, when(alarm.acknowledged_at, { id: "detail-acknowledged" }))
      : null,
    alarm.outcome ? row(t("detail.outcome"), alarm.outcome) : null,
  );

  const map = drawTrack({ track, zones, alarmPosition: alarm.position, t, tiles: mapTiles });
  const figure = h("figure", { class: "map" },
    map,
    h("figcaption", {},
      h("span", { id: "detail-track" }, t("detail.track", {
        hours: count("count.hours", data.track_hours),
        positions: count("count.positions", track.length),
      })),
      h("span", { class: "legend" }, t("detail.legend")),
      zones.length
        ? h("span", { id: "detail-zones" }, `${t("detail.zones", { n: zones.length })}: ${zones.map((z) => z.name).join(", ")}`)
        : null,
      h("span", { class: "tz" }, t("detail.time_zone", { zone: getTimeZone() }))));

  root.replaceChildren(head, h("div", { class: "detail-grid" }, facts, figure));
}

/** Keep the "… ago" of the detail's times current (called every second). */
export function tickDetail(root) {
  const lang = getLang();
  for (const node of root.querySelectorAll("time.ago")) {
    const text = formatTimeAgo(node.getAttribute("datetime"), lang);
    if (node.textContent !== text) node.textContent = text;
  }
}
