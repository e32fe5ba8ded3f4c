// The night view (issue #20, docs/supervision.md): tonight's planned supervision checks per
// person, their results as they happen (OK, retried, not OK, failed; planned until made),
// and the alarms they and the passive rules raised. Reads GET /api/v1/supervision/night.

import { h } from "./dom.js";
import { formatTime } from "./format.js";
import { label, t } from "./i18n.js";

/** A check's status as a badge: planned, ok, retried, not_ok, failed. */
function badge(status) {
  return h("span", { class: `check-status check-${status}`, dataset: { status } },
    t(`night.status.${status}`));
}

function seenText(attempt) {
  const sensors = attempt.seen?.sensors || [];
  if (!sensors.length) return attempt.reason || "–";
  const parts = sensors.map((s) => {
    const value = s.offline ? t("night.offline") : t(`night.value.${s.kind}.${s.value}`);
    return `${label("sensor", s.kind)}: ${value}`;
  });
  return attempt.reason ? `${parts.join(", ")} (${attempt.reason})` : parts.join(", ");
}

function checkRow(check) {
  const attempts = check.attempts.map((a) => `${t(`night.status.${a.result}`)} ${formatTime(a.evaluated_at)}`);
  const last = check.attempts[check.attempts.length - 1];
  return h("tr", { dataset: { status: check.status, plannedAt: check.planned_at } },
    h("td", { "data-label": t("night.time") },
      h("time", { datetime: check.planned_at, title: formatTime(check.planned_at) }, check.local_time)),
    h("td", { "data-label": t("night.result") }, badge(check.status)),
    h("td", { "data-label": t("night.attempts") }, attempts.join(" → ") || "–"),
    h("td", { "data-label": t("night.seen") }, last ? seenText(last) : "–"),
    h("td", { "data-label": t("night.alarm") },
      check.alarm_id ? h("a", { href: `#/alarm/${check.alarm_id}` }, t("night.open_alarm")) : "–"));
}

function personSection(p) {
  return h("section", { class: "night-person", dataset: { personId: p.person_id, planId: p.plan_id } },
    h("h3", {}, `${p.person_ref} · ${t(`night.seen_rule.${p.seen}`)} · ${p.team}`),
    h("table", { class: "fleet-table night-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col" }, t("night.time")),
        h("th", { scope: "col" }, t("night.result")),
        h("th", { scope: "col" }, t("night.attempts")),
        h("th", { scope: "col" }, t("night.seen")),
        h("th", { scope: "col" }, t("night.alarm")))),
      h("tbody", {}, p.checks.map(checkRow))));
}

function alarmsSection(data) {
  const refs = new Map(data.persons.map((p) => [p.person_id, p.person_ref]));
  const head = h("h3", { id: "night-alarms-h" }, t("night.alarms"));
  if (!data.alarms.length) {
    return h("section", { id: "night-alarms", "aria-labelledby": "night-alarms-h" },
      head, h("p", { class: "empty" }, t("night.no_alarms")));
  }
  return h("section", { id: "night-alarms", "aria-labelledby": "night-alarms-h" }, head,
    h("ul", { class: "night-alarms" }, data.alarms.map((a) => h("li", { dataset: { kind: a.kind } },
      h("a", { href: `#/alarm/${a.id}` }, label("kind", a.kind)),
      ` · ${refs.get(a.person_id) || ""} · ${formatTime(a.raised_at)} · ${label("state", a.state)}`))));
}

/** Render the night ``data`` into ``body`` (``summary``: the night's period). */
export function renderNight(summary, body, data) {
  const counts = {};
  for (const p of data.persons) for (const c of p.checks) counts[c.status] = (counts[c.status] || 0) + 1;
  summary.textContent = t("night.summary", {
    from: formatTime(data.starts_at), to: formatTime(data.ends_at),
    plans: data.persons.length,
    ok: counts.ok || 0, not_ok: counts.not_ok || 0, failed: counts.failed || 0,
  });
  const persons = data.persons.length
    ? data.persons.map(personSection)
    : [h("p", { class: "empty" }, t("night.no_plans"))];
  body.replaceChildren(...persons, alarmsSection(data));
}
