// Fleet health: silent devices, low batteries and devices never seen since registration.

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

export function renderFleet(summary, body, data) {
  summary.textContent = t("fleet.summary", {
    devices: count("count.devices_in_service", data.devices_in_service),
    f: data.thresholds.silence_factor,
    g: data.thresholds.silence_grace_s,
    b: data.thresholds.battery_low_percent,
  });
  const section = (key, rows, id) => h("section", { class: "fleet-group", "aria-labelledby": `${id}-h` },
    h("h3", { id: `${id}-h` }, `${t(key)} (${rows.length})`),
    table(rows, id));
  body.replaceChildren(
    section("fleet.silent", data.silent, "fleet-silent"),
    section("fleet.low_battery", data.low_battery, "fleet-low-battery"),
    section("fleet.never_seen", data.never_seen, "fleet-never-seen"));
}
