// Fleet health: silent devices, low batteries and devices never seen since registration;
// for tenant admins, the devices whose messages the gateway refused, grouped by model so
// that a vendor's firmware bug (many devices of one model, one reason) stands out.

import { h } from "./dom.js";
import { formatAgo, formatTime } from "./format.js";
import { count, getLang, label, t } from "./i18n.js";

function table(rows, id) {
  if (!rows.length) return h("p", { class: "empty", id }, t("fleet.none"));
  const lang = getLang();
  return h("table", { class: "fleet-table", id },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, t("detail.device")),
      h("th", { scope: "col" }, t("fleet.type")),
      h("th", { scope: "col" }, t("col.person")),
      h("th", { scope: "col" }, t("detail.last_seen")),
      h("th", { scope: "col" }, t("detail.battery")),
      h("th", { scope: "col" }, t("fleet.registered")))),
    h("tbody", {}, rows.map((d) => h("tr", { dataset: { deviceId: d.device_id } },
      h("td", { "data-label": t("detail.device") }, d.device_id),
      h("td", { "data-label": t("fleet.type") }, label("device_type", d.device_type)),
      h("td", { "data-label": t("col.person") }, d.person_ref || label("status", d.status)),
      h("td", { "data-label": t("detail.last_seen") },
        d.last_seen
          ? h("time", { datetime: d.last_seen, title: formatTime(d.last_seen) }, formatAgo(Date.now() - Date.parse(d.last_seen), lang))
          : t("never")),
      h("td", { "data-label": t("detail.battery") }, d.battery_percent !== null ? `${d.battery_percent} %` : "–"),
      h("td", { "data-label": t("fleet.registered") },
        h("time", { datetime: d.registered_at }, formatTime(d.registered_at)))))));
}

/** A reason shared by this many devices of one model marks the model as a likely firmware fault. */
export const PATTERN_DEVICES = 3;

function modelName(m) {
  if (!m.model_id) return t("refused.unknown_model");
  return `${m.vendor} ${m.model} · ${label("device_type", m.device_type)}`;
}

function refusedTable(devices) {
  return h("table", { class: "fleet-table refused-table" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, t("detail.device")),
      h("th", { scope: "col" }, t("fleet.status")),
      h("th", { scope: "col" }, t("refused.reasons")),
      h("th", { scope: "col" }, t("refused.first")),
      h("th", { scope: "col" }, t("refused.last")))),
    h("tbody", {}, devices.map((d) => h("tr", { dataset: { deviceId: d.device_id } },
      h("td", { "data-label": t("detail.device") }, d.device_id),
      h("td", { "data-label": t("fleet.status") }, d.status ? label("status", d.status) : "–"),
      h("td", { "data-label": t("refused.reasons") },
        Object.entries(d.reasons).sort((a, b) => b[1] - a[1])
          .map(([reason, n]) => `${label("quarantine", reason)} × ${n}`).join(", ")),
      h("td", { "data-label": t("refused.first") },
        h("time", { datetime: d.first_at }, formatTime(d.first_at))),
      h("td", { "data-label": t("refused.last") },
        h("time", { datetime: d.last_at }, formatTime(d.last_at)))))));
}

/** The "Refused messages" section: one group per model, most refusing devices first. */
export function renderRefused(data) {
  const since = formatTime(data.since);
  const total = data.devices_total;
  const head = h("h3", { id: "fleet-refused-h" }, `${t("refused.title")} (${total})`);
  if (!total) {
    return h("section", { class: "fleet-group", id: "fleet-refused", "aria-labelledby": "fleet-refused-h" },
      head, h("p", { class: "empty" }, t("refused.none", { since })));
  }
  const messages = data.models.reduce((sum, m) => sum + m.refused, 0);
  const groups = data.models.map((m) => {
    const pattern = m.reasons.some((r) => r.devices >= PATTERN_DEVICES);
    const devices = data.devices.filter((d) => d.model_id === m.model_id);
    const more = m.devices - devices.length;
    return h("section", {
      class: pattern ? "refused-model pattern" : "refused-model",
      dataset: { modelId: m.model_id ?? "", pattern: pattern ? "true" : "false" },
    },
      h("h4", {}, `${modelName(m)} – ${count("count.refusing_devices", m.devices)}, ${count("count.refused_messages", m.refused)}`),
      pattern ? h("p", { class: "refused-pattern" }, t("refused.pattern")) : null,
      h("ul", { class: "refused-reasons" }, m.reasons.map((r) => h("li", { dataset: { reason: r.reason } },
        t("refused.reason_line", {
          reason: label("quarantine", r.reason),
          devices: count("count.refusing_devices", r.devices),
          messages: count("count.refused_messages", r.refused),
        })))),
      devices.length ? refusedTable(devices) : null,
      more > 0 ? h("p", { class: "refused-more" }, count("count.more_devices", more)) : null);
  });
  return h("section", { class: "fleet-group", id: "fleet-refused", "aria-labelledby": "fleet-refused-h" },
    head,
    h("p", { class: "refused-summary" }, t("refused.summary", {
      since,
      devices: count("count.refusing_devices", total),
      messages: count("count.refused_messages", messages),
    })),
    ...groups);
}

export function renderFleet(summary, body, data, refused = null) {
  summary.textContent = t("fleet.summary", {
    devices: count("count.devices_in_service", data.devices_in_service),
    f: data.thresholds.silence_factor,
    g: data.thresholds.silence_grace_s,
    b: data.thresholds.battery_low_percent,
  });
  const section = (key, rows, id) => h("section", { class: "fleet-group", "aria-labelledby": `${id}-h` },
    h("h3", { id: `${id}-h` }, `${t(key)} (${rows.length})`),
    table(rows, id));
  const sections = [
    section("fleet.silent", data.silent, "fleet-silent"),
    section("fleet.low_battery", data.low_battery, "fleet-low-battery"),
    section("fleet.never_seen", data.never_seen, "fleet-never-seen"),
  ];
  if (refused) sections.push(renderRefused(refused));
  body.replaceChildren(...sections);
}
