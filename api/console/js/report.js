// The follow-up report view (issue #21.1): the municipality's report for a month, drawn by
// the server (inline SVG charts, tables) and shown here; printed with the browser's print
// (the console's print style leaves the report alone); CSV downloaded with the token.
//
// The report's HTML is fetched with the bearer token and its sections imported into the
// page (no frame, no inline style or script: the console's strict CSP holds; the charts'
// colours are SVG attributes, the rest is console.css).

import { ApiError, unauthorized } from "./api.js";
import { getToken } from "./auth.js";
import { h } from "./dom.js";
import { getLang, t } from "./i18n.js";

const PATH = "/api/v1/reports/followup";

/** "YYYY-MM" of the month before this one (the monthly report's default). */
export function lastMonth(now = new Date()) {
  const d = new Date(now.getFullYear(), now.getMonth() - 1, 1);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}`;
}

async function fetchText(url) {
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
  return text;
}

function query(month, format) {
  return `${PATH}?month=${encodeURIComponent(month)}&format=${format}&lang=${getLang()}`;
}

/** Show the report of ``month`` (YYYY-MM) in ``body``. */
export async function renderReport(body, month) {
  body.replaceChildren(h("p", { class: "loading" }, t("report.loading")));
  body.dataset.month = month;
  const html = await fetchText(query(month, "html"));
  if (body.dataset.month !== month) return; // another month asked for meanwhile
  // The page's own <style> is for the page printed alone; here console.css styles it (a
  // parsed document would still report the inline style to the console's CSP).
  const bare = html.replace(/<style>[\s\S]*?<\/style>/g, "");
  const doc = new DOMParser().parseFromString(bare, "text/html");
  for (const node of doc.querySelectorAll("style, script, title")) node.remove();
  const article = h("article", { class: "report-page" });
  article.append(...[...doc.body.childNodes].map((n) => document.importNode(n, true)));
  body.replaceChildren(article);
}

/** Download the report of ``month`` as CSV. */
export async function downloadCsv(month) {
  const text = await fetchText(query(month, "csv"));
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
  const link = h("a", { href: url, download: `uppfoljning-${month}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
