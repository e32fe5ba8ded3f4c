// Alarm detail: the person's pseudonymous reference and care notes, the device's battery
// and last-seen, and the recent track drawn against the person's safe zones.

import { escalationText, severityBadge, stateBadge } from "./board.js";
import { h } from "./dom.js";
import { formatAge, formatTime } from "./format.js";
import { getLang, label, t } from "./i18n.js";
import { drawTrack } from "./map.js";

function row(term, ...value) {
  return [h("dt", {}, term), h("dd", {}, ...value)];
}

function ago(iso) {
  if (!iso) return t("never");
  return `${formatTime(iso, getLang())} (${t("ago", { t: formatAge(Date.now() - Date.parse(iso)) })})`;
}

/**
 * Render the detail ``data`` (as /api/v1/console/alarms/{id} returns it) into ``root``;
 * ``mapTiles``: the map tile configuration from /api/v1/console/me, or null for none.
 */
export function renderDetail(root, data, actions, mapTiles = null) {
  const { alarm, person, device, safe_zones: zones, track } = data;
  const lang = getLang();
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
    row(t("detail.device"), alarm.device_id, device ? ` · ${label("device_type", device.device_type)}` : ""),
    row(t("detail.battery"), h("span", { id: "detail-battery" },
      device && device.battery_percent !== null ? `${device.battery_percent} %` : t("unknown"))),
    row(t("detail.last_seen"), h("span", { id: "detail-last-seen" }, ago(device && device.last_seen))),
    row(t("detail.online"), device && device.online !== null ? t(device.online ? "yes" : "no") : t("unknown")),
    row(t("detail.raised"), formatTime(alarm.raised_at, lang)),
    row(t("detail.last"), formatTime(alarm.last_at, lang)),
    row(t("col.occurrences"), String(alarm.occurrences)),
    row(t("col.escalation"), escalationText(alarm)),
    alarm.acknowledged_by ? row(t("detail.acknowledged"), `${alarm.acknowledged_by}, ${formatTime(alarm.acknowledged_at, lang)}`) : null,
    alarm.outcome ? row(t("detail.outcome"), alarm.outcome) : null,
  );

  const map = drawTrack({ track, zones, alarmPosition: alarm.position, t, tiles: mapTiles });
  const figure = h("figure", { class: "map" },
    map,
    h("figcaption", {},
      h("span", {}, t("detail.track", { h: data.track_hours, n: track.length })),
      h("span", { class: "legend" }, t("detail.legend")),
      zones.length ? h("span", {}, `${t("detail.zones")}: ${zones.map((z) => z.name).join(", ")}`) : null));

  root.replaceChildren(head, h("div", { class: "detail-grid" }, facts, figure));
}
