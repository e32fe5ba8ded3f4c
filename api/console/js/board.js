// The live alarm board: a table of the open alarms, most severe then newest first, with a
// ticking age, and a selected row that the keyboard moves (roving tabindex).

import { formatAgo, formatTime } from "./format.js";
import { h, show } from "./dom.js";
import { count, getLang, label, t } from "./i18n.js";

/** The unit whose shared device raised the alarm (docs/units.md), if any. */
export function unitOf(alarm) {
  return alarm.unit || (alarm.detail && alarm.detail.unit) || null;
}

export function escalationText(alarm) {
  const level = t("escalation.level", { n: alarm.escalation_level ?? 0 });
  const groups = (alarm.recipients || []).map((g) => label("group", g));
  return groups.length ? `${level} · ${groups.join(" → ")}` : level;
}

export function stateBadge(alarm) {
  return h("span", { class: `badge state state-${alarm.state}` },
    label("state", alarm.state),
    alarm.condition === "cleared" ? ` (${t("condition.cleared")})` : null);
}

export function severityBadge(alarm) {
  return h("span", { class: `badge sev sev-${alarm.severity}` }, label("severity", alarm.severity));
}

export class BoardView {
  constructor({ model, tbody, empty, count, actions }) {
    this.model = model;
    this.tbody = tbody;
    this.empty = empty;
    this.count = count;
    this.actions = actions; // {open(id), ack(id), resolve(id)}
    this.selectedId = null;
    this.fresh = new Set(); // new alarms not yet acknowledged: highlighted
  }

  render() {
    const alarms = this.model.sorted();
    const active = document.activeElement;
    const focusRow = active && active.closest ? active.closest("tr[data-alarm-id]") : null;
    const focusId = focusRow ? focusRow.dataset.alarmId : null;
    const focusAction = active && active.dataset ? active.dataset.action : null;

    if (this.selectedId && !this.model.get(this.selectedId)) this.selectedId = null;
    if (!this.selectedId && alarms.length) this.selectedId = alarms[0].alarm_id;
    for (const id of [...this.fresh]) {
      const alarm = this.model.get(id);
      if (!alarm || alarm.state !== "raised") this.fresh.delete(id);
    }

    this.tbody.replaceChildren(...alarms.map((a) => this.row(a)));
    show(this.empty, alarms.length === 0);
    const unacked = alarms.filter((a) => a.state === "raised").length;
    this.count.textContent = t("board.count", {
      open: count("count.open_alarms", alarms.length),
      unacked: count("count.unacknowledged", unacked),
    });

    if (focusId) {
      const row = this.rowOf(focusId);
      const target = row && (focusAction ? row.querySelector(`[data-action="${focusAction}"]`) : row);
      (target || row || this.rowOf(this.selectedId))?.focus();
    }
  }

  row(alarm) {
    const id = alarm.alarm_id;
    const selected = id === this.selectedId;
    const classes = ["alarm", `row-sev-${alarm.severity}`];
    if (selected) classes.push("selected");
    if (this.fresh.has(id)) classes.push("fresh");
    const actions = [];
    if (alarm.state === "raised") {
      actions.push(h("button", { type: "button", class: "act ack", dataset: { action: "ack" },
        onclick: () => this.actions.ack(id) }, t("act.ack")));
    }
    actions.push(h("button", { type: "button", class: "act resolve", dataset: { action: "resolve" },
      onclick: () => this.actions.resolve(id) }, t("act.resolve")));
    actions.push(h("a", { href: `#/alarm/${id}`, class: "act detail", dataset: { action: "detail" } },
      t("act.detail")));
    return h("tr", {
      class: classes.join(" "),
      tabindex: selected ? "0" : "-1",
      "aria-selected": selected ? "true" : "false",
      dataset: { alarmId: id, state: alarm.state, kind: alarm.kind, severity: alarm.severity },
      onclick: (e) => { if (!e.target.closest("button, a")) this.select(id, true); },
      onfocus: (e) => { if (e.target === e.currentTarget) this.select(id, false); },
    },
      h("td", { class: "c-state", "data-label": t("col.state") }, stateBadge(alarm)),
      h("td", { class: "c-kind", "data-label": t("col.kind") }, label("kind", alarm.kind)),
      h("td", { class: "c-severity", "data-label": t("col.severity") }, severityBadge(alarm)),
      h("td", { class: "c-person", "data-label": t("col.person") }, alarm.person_ref || alarm.device_id,
        // a resident of another municipality staying here (docs/stays.md)
        alarm.guest ? h("small", { class: "guest" }, " · " + t("board.guest", { home: alarm.guest.home_tenant_id })) : null,
        // a unit's shared device: where to go (docs/units.md)
        unitOf(alarm) ? h("small", { class: "unit" }, " · " + t("board.unit", { name: unitOf(alarm).name || unitOf(alarm).id })) : null),
      h("td", { class: "c-age", "data-label": t("col.age") },
        h("time", { datetime: alarm.raised_at, class: "age", title: formatTime(alarm.raised_at) },
          formatAgo(Date.now() - Date.parse(alarm.raised_at), getLang()))),
      h("td", { class: "c-occ", "data-label": t("col.occurrences") }, String(alarm.occurrences)),
      h("td", { class: "c-esc", "data-label": t("col.escalation") }, escalationText(alarm)),
      h("td", { class: "c-actions" }, h("div", { class: "actions" }, actions)),
    );
  }

  rowOf(id) {
    return id ? this.tbody.querySelector(`tr[data-alarm-id="${CSS.escape(id)}"]`) : null;
  }

  tick() {
    const now = Date.now();
    const lang = getLang();
    for (const node of this.tbody.querySelectorAll("time.age")) {
      const text = formatAgo(now - Date.parse(node.getAttribute("datetime")), lang);
      if (node.textContent !== text) node.textContent = text;
    }
  }

  select(id, focus) {
    if (this.selectedId === id && !focus) return;
    const previous = this.rowOf(this.selectedId);
    if (previous) {
      previous.classList.remove("selected");
      previous.setAttribute("tabindex", "-1");
      previous.setAttribute("aria-selected", "false");
    }
    this.selectedId = id;
    const row = this.rowOf(id);
    if (row) {
      row.classList.add("selected");
      row.setAttribute("tabindex", "0");
      row.setAttribute("aria-selected", "true");
      if (focus) row.focus();
    }
  }

  move(delta) {
    const ids = this.model.sorted().map((a) => a.alarm_id);
    if (!ids.length) return;
    const at = ids.indexOf(this.selectedId);
    const next = at === -1 ? 0 : Math.max(0, Math.min(ids.length - 1, at + delta));
    this.select(ids[next], true);
  }
}
