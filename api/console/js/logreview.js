// The log review view (issue #21.2-3, docs/log-review.md): the flags over the access log of
// the municipality's residents for a period, with their evidence, each marked reviewed with
// a comment; and a resident's log extract (HTML or CSV), downloaded with the token.
//
// Built with h() (no markup from data); the extract is a file the auditor opens and prints.

import { ApiError, api, unauthorized } from "./api.js";
import { getToken } from "./auth.js";
import { h } from "./dom.js";
import { formatTime } from "./format.js";
import { label, t } from "./i18n.js";

const FLAGS = "/api/v1/log-review/flags";

/** "YYYY-MM-DD" of a date in local time. */
function day(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
}

/** The default period: the last 7 days, today included. */
export function defaultPeriod(now = new Date()) {
  const from = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 6);
  return { from: day(from), to: day(now) };
}

/** Local dates (inclusive) as the API's [since, until) instants. */
function instants(from, to) {
  const since = new Date(`${from}T00:00:00`);
  const until = new Date(`${to}T00:00:00`);
  until.setDate(until.getDate() + 1);
  return { since: since.toISOString(), until: until.toISOString() };
}

function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join("&");
}

function reader(flag) {
  const org = flag.actor_org ? ` (${flag.actor_org})` : flag.actor_tenant ? ` (${flag.actor_tenant})` : "";
  return `${flag.actor}${org}`;
}

/** The flag in one line, in the console's language, from its evidence. */
export function summaryText(flag) {
  const ev = flag.evidence || {};
  const categories = (ev.entry?.categories || []).join(", ");
  switch (flag.rule) {
    case "no_context":
      return t("logsum.no_context", { categories });
    case "many_residents":
      return t("logsum.many_residents", {
        residents: ev.residents, first: formatTime(ev.first_at), last: formatTime(ev.last_at),
        threshold: ev.threshold, window: ev.window_minutes,
      });
    case "outside_hours":
      return t("logsum.outside_hours", { local: ev.local_time, hours: ev.hours });
    case "near_consent_end":
      return t("logsum.near_consent_end", { minutes: ev.minutes_to_end, end: formatTime(ev.consent_end) });
    case "after_consent_end":
      return t("logsum.after_consent_end", { minutes: -ev.minutes_to_end, end: formatTime(ev.consent_end) });
    default:
      return flag.summary;
  }
}

function evidence(flag) {
  return h(
    "details",
    { class: "log-evidence" },
    h("summary", {}, summaryText(flag)),
    h("pre", {}, JSON.stringify(flag.evidence, null, 2)),
  );
}

function reviewCell(flag, actions) {
  if (flag.review) {
    const r = flag.review;
    return h("span", { class: "log-reviewed" },
      t("log.reviewed", { at: formatTime(r.reviewed_at), by: r.reviewed_by, comment: r.comment }));
  }
  const input = h("input", {
    type: "text", class: "log-comment", maxlength: 2000, "aria-label": t("log.comment"),
    placeholder: t("log.comment"),
  });
  const form = h("form", {
    class: "log-review",
    onsubmit: (event) => {
      event.preventDefault();
      const comment = input.value.trim();
      if (comment) actions.review(flag.key, comment);
    },
  }, input, h("button", { type: "submit", class: "tool" }, t("log.review")));
  return form;
}

function extractLinks(personId, actions) {
  return h("span", { class: "log-extract" },
    h("button", { type: "button", class: "link", dataset: { person: personId, format: "html" },
      onclick: () => actions.extract(personId, "html") }, t("log.extract")),
    " ",
    h("button", { type: "button", class: "link", dataset: { person: personId, format: "csv" },
      onclick: () => actions.extract(personId, "csv") }, t("log.extract_csv")));
}

/** Draw the flags (``data``: the API's answer) into ``body``. */
export function renderFlags(body, data, actions) {
  const rows = data.flags.map((flag) =>
    h("tr", { dataset: { key: flag.key, rule: flag.rule }, class: flag.review ? "reviewed" : "" },
      h("td", {}, formatTime(flag.at)),
      h("td", {}, label("logrule", flag.rule)),
      h("td", {}, reader(flag)),
      h("td", {}, ...flag.person_ids.map((p) =>
        h("div", { class: "log-person" }, h("code", {}, p.slice(0, 8)), " ", extractLinks(p, actions)))),
      h("td", {}, evidence(flag)),
      h("td", {}, reviewCell(flag, actions))));
  const summary = h("p", { class: "count", id: "log-summary" },
    t("log.summary", { flags: data.flags.length, entries: data.entries }));
  if (!rows.length) {
    body.replaceChildren(summary, h("p", { class: "empty" }, t("log.empty")));
    return;
  }
  const head = ["log.col.at", "log.col.rule", "log.col.reader", "log.col.residents",
    "log.col.evidence", "log.col.review"].map((k) => h("th", { scope: "col" }, t(k)));
  body.replaceChildren(summary, h("table", { class: "board log-flags" },
    h("thead", {}, h("tr", {}, ...head)), h("tbody", {}, ...rows)));
}

/** The flags of the period (local dates, inclusive). */
export async function fetchFlags(from, to, openOnly) {
  const { since, until } = instants(from, to);
  return api(`${FLAGS}?${query({ since, until, reviewed: openOnly ? "false" : "" })}`);
}

export async function reviewFlag(key, comment) {
  return api(`${FLAGS}/${encodeURIComponent(key)}/review`, { method: "POST", body: { comment } });
}

/** Download a resident's log extract of the period as ``format`` (html or csv). */
export async function downloadExtract(personId, format, from, to) {
  const { since, until } = instants(from, to);
  const url = `/api/v1/persons/${personId}/log-extract?${query({ since, until, format })}`;
  const response = await fetch(url, {
    headers: { Authorization: `Bearer ${getToken() || ""}` },
    cache: "no-store",
  });
  if (response.status === 401) {
    unauthorized();
    throw new ApiError(401, "unauthorized");
  }
  const text = await response.text();
  if (!response.ok) {
    let detail = String(response.status);
    try {
      detail = JSON.parse(text).detail || detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, detail);
  }
  const type = format === "csv" ? "text/csv;charset=utf-8" : "text/html;charset=utf-8";
  const href = URL.createObjectURL(new Blob([text], { type }));
  const link = h("a", { href, download: `loggutdrag-${personId.slice(0, 8)}-${from}-${to}.${format}` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
  return text;
}
