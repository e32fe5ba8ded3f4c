// The console's entry point: sign-in, views (board, alarm detail, fleet), the live stream,
// actions and keyboard shortcuts.

import { AlarmModel } from "./alarms.js";
import { api, ApiError, setUnauthorizedHandler } from "./api.js";
import { claims, clearToken, getToken, setToken, takeTokenFromFragment } from "./auth.js";
import { BoardView } from "./board.js";
import { renderDetail, tickDetail } from "./detail.js";
import { h, show } from "./dom.js";
import { renderFleet } from "./fleet.js";
import { renderNight } from "./night.js";
import { downloadCsv, lastMonth, renderReport } from "./report.js";
import { defaultPeriod, downloadExtract, fetchFlags, renderFlags, reviewFlag } from "./logreview.js";
import { DEFAULT_TIME_ZONE, setTimeZone } from "./format.js";
import { applyI18n, getLang, label, setLang, t } from "./i18n.js";
import { Beeper } from "./sound.js";
import { LiveStream } from "./sse.js";

const $ = (id) => document.getElementById(id);
const OUTCOMES = ["visited_ok", "helped_phone", "ambulance", "false_alarm", "technical", "other"];

const model = new AlarmModel();
const beeper = new Beeper();
const state = {
  me: null,
  tenant: null, // {id, name, kind, time_zone} from /api/v1/tenant
  stream: null,
  status: "offline",
  view: null,
  detail: null, // the data of the open detail view
  resolving: null, // alarm id in the resolve dialog
  bannerAlarm: null,
  expiry: null,
  fleetTimer: null,
  nightTimer: null, // the night view's refresh (#20)
  fleetOnly: false, // a technician (installer): the fleet view only, no alarms
  reportOnly: false, // an auditor: the follow-up report only (#21.1)
};

const board = new BoardView({
  model,
  tbody: $("board-rows"),
  empty: $("board-empty"),
  count: $("board-count"),
  actions: { ack: acknowledge, resolve: openResolve, open: (id) => go(`#/alarm/${id}`) },
});

// --- sign-in ------------------------------------------------------------------------------
function showSignin(messageKey) {
  stopSession();
  const error = $("signin-error");
  error.textContent = messageKey ? t(messageKey) : "";
  error.dataset.key = messageKey || "";
  show(error, Boolean(messageKey));
  setView("signin");
  $("token").focus();
}

function stopSession() {
  if (state.stream) state.stream.stop();
  state.stream = null;
  state.me = null;
  state.tenant = null;
  clearTimeout(state.expiry);
  clearInterval(state.fleetTimer);
  clearInterval(state.nightTimer);
  show($("nav-night"), false);
  model.replace([]);
  board.render();
  updateTitle();
  setStatus("offline");
  renderTenant();
  hideBanner();
  for (const id of ["nav-board", "nav-fleet", "nav-report", "nav-log", "signout"]) show($(id), false);
  state.fleetOnly = false;
  state.reportOnly = false;
  show($("conn"), true);
}

setUnauthorizedHandler(() => {
  clearToken();
  showSignin("signin.expired");
});

async function startSession() {
  let me;
  try {
    me = await api("/api/v1/console/me");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) showSignin("signin.failed");
    return;
  }
  if (!me.may_handle_alarms && !me.may_view_fleet && !me.may_read_report && !me.may_review_log) {
    clearToken();
    showSignin("signin.role");
    return;
  }
  state.me = me;
  const tenant = await loadTenant(me.tenant);
  if (!tenant || state.me !== me) return; // signed out meanwhile
  state.tenant = tenant;
  setTimeZone(state.tenant.time_zone);
  renderTenant();
  state.reportOnly = !me.may_handle_alarms && !me.may_view_fleet;
  state.fleetOnly = !me.may_handle_alarms && !state.reportOnly;
  show($("signout"), true);
  show($("nav-fleet"), !state.reportOnly);
  show($("nav-report"), Boolean(me.may_read_report));
  show($("nav-log"), Boolean(me.may_review_log));
  show($("nav-board"), !state.fleetOnly && !state.reportOnly);
  show($("nav-night"), Boolean(me.may_handle_alarms)); // the night view (#20)
  show($("conn"), !state.fleetOnly && !state.reportOnly); // no alarm stream to be connected to
  const exp = claims(getToken())?.exp;
  if (exp) {
    const ms = exp * 1000 - Date.now();
    state.expiry = setTimeout(() => { clearToken(); showSignin("signin.expired"); }, Math.max(0, Math.min(ms, 2 ** 31 - 1)));
  }
  if (state.fleetOnly || state.reportOnly) {
    route();
    return;
  }
  const cursor = await loadSnapshot();
  if (!state.me) return;
  state.stream = new LiveStream({
    url: "/api/v1/alarms/stream",
    token: getToken,
    lastEventId: cursor ? String(cursor) : "",
    onEvent: onStreamEvent,
    onStatus: setStatus,
    onUnauthorized: () => { clearToken(); showSignin("signin.expired"); },
  });
  state.stream.start();
  route();
}

/** The tenant's name and time zone; without them (an older API, a tenant with no row),
 * the id from the token and Europe/Stockholm; null when the token was refused. */
async function loadTenant(id) {
  try {
    const tenant = await api("/api/v1/tenant");
    if (tenant && tenant.id === id) return tenant;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null; // back at sign-in
  }
  return { id, name: id, kind: null, time_zone: DEFAULT_TIME_ZONE };
}

function renderTenant() {
  const node = $("tenant");
  if (!state.tenant) {
    node.textContent = "";
    delete node.dataset.tenant;
    node.removeAttribute("title");
    return;
  }
  node.textContent = `${t("tenant")}: ${state.tenant.name}`;
  node.dataset.tenant = state.tenant.id;
  node.title = state.tenant.id;
}

async function loadSnapshot() {
  try {
    const snapshot = await api("/api/v1/console/alarms");
    model.replace(snapshot.alarms);
    board.render();
    updateTitle(); // the count is right from the first load, not only after a live event
    return snapshot.cursor;
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notice(String(error.message || error));
    return null;
  }
}

// --- the live stream --------------------------------------------------------------------------
function onStreamEvent(event) {
  if (event.event === "resync") {
    loadSnapshot();
    return;
  }
  if (event.event !== "alarm") return;
  const alarm = JSON.parse(event.data);
  const result = model.apply(alarm);
  if (result === "ignored") return;
  const isNewAlarm = result === "new" && alarm.event === "raised";
  if (isNewAlarm || (result === "changed" && alarm.event === "occurred")) {
    board.fresh.add(alarm.alarm_id);
    cue(alarm);
  }
  if (state.bannerAlarm === alarm.alarm_id && alarm.state !== "raised") hideBanner();
  if (state.view === "night" && NIGHT_KINDS.has(alarm.kind)) loadNight(); // a check's alarm: at once
  board.render();
  updateTitle();
  if (state.view === "detail" && state.detail && state.detail.alarm.alarm_id === alarm.alarm_id) {
    state.detail = { ...state.detail, alarm: { ...state.detail.alarm, ...alarm } };
    renderDetail($("detail-body"), state.detail, detailActions, state.me?.map_tiles);
  }
}

function cue(alarm) {
  beeper.beep();
  const banner = $("banner");
  banner.replaceChildren(h("a", { href: `#/alarm/${alarm.alarm_id}` },
    t("board.new", { kind: label("kind", alarm.kind), ref: alarm.person_ref || alarm.device_id })));
  banner.dataset.alarmId = alarm.alarm_id;
  banner.classList.remove("flash");
  void banner.offsetWidth; // restart the animation
  banner.classList.add("flash");
  show(banner, true);
  state.bannerAlarm = alarm.alarm_id;
}

function hideBanner() {
  show($("banner"), false);
  state.bannerAlarm = null;
}

function updateTitle() {
  const raised = model.sorted().filter((a) => a.state === "raised").length;
  document.title = `${raised ? `(${raised}) ` : ""}${t("app.title")}`;
}

function setStatus(status) {
  state.status = status;
  const node = $("conn");
  node.dataset.status = status;
  node.textContent = t(`conn.${status}`);
}

// --- actions ------------------------------------------------------------------------------------
function notice(text) {
  const node = $("notice");
  node.textContent = text;
  show(node, Boolean(text));
}

async function acknowledge(id) {
  try {
    await api(`/api/v1/alarms/${id}/acknowledge`, { method: "POST" });
    notice("");
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401) notice(t("ack.failed", { detail: error.detail }));
  }
}

function openResolve(id) {
  const alarm = model.get(id);
  if (!alarm) return;
  state.resolving = id;
  $("resolve-what").textContent = `${label("kind", alarm.kind)} – ${alarm.person_ref || alarm.device_id}`;
  const select = $("resolve-outcome");
  select.replaceChildren(
    h("option", { value: "" }, t("resolve.choose")),
    ...OUTCOMES.map((o) => h("option", { value: o }, t(`outcome.${o}`))));
  $("resolve-note").value = "";
  show($("resolve-error"), false);
  $("resolve-dialog").showModal();
  select.focus();
}

async function submitResolve(event) {
  event.preventDefault();
  const choice = $("resolve-outcome").value;
  const note = $("resolve-note").value.trim();
  const error = $("resolve-error");
  if (!choice || (choice === "other" && !note)) {
    error.textContent = t(choice ? "resolve.note_required" : "resolve.choose");
    show(error, true);
    (choice ? $("resolve-note") : $("resolve-outcome")).focus();
    return;
  }
  const outcome = note ? `${t(`outcome.${choice}`)} – ${note}` : t(`outcome.${choice}`);
  try {
    await api(`/api/v1/alarms/${state.resolving}/resolve`, { method: "POST", body: { outcome } });
    $("resolve-dialog").close();
    notice("");
  } catch (err) {
    if (err instanceof ApiError && err.status !== 401) {
      error.textContent = t("resolve.failed", { detail: err.detail });
      show(error, true);
    }
  }
}

const detailActions = { ack: acknowledge, resolve: openResolve };

// --- views ------------------------------------------------------------------------------------------
function setView(name) {
  state.view = name;
  for (const v of ["signin", "board", "detail", "fleet", "report", "log"]) show($(`view-${v}`), v === name);
  $("nav-board").setAttribute("aria-current", name === "board" || name === "detail" ? "page" : "false");
  $("nav-fleet").setAttribute("aria-current", name === "fleet" ? "page" : "false");
  show($("view-night"), name === "night");
  $("nav-night").setAttribute("aria-current", name === "night" ? "page" : "false");
  if (name !== "night") clearInterval(state.nightTimer);
  $("nav-report").setAttribute("aria-current", name === "report" ? "page" : "false");
  $("nav-log").setAttribute("aria-current", name === "log" ? "page" : "false");
  if (name !== "fleet") clearInterval(state.fleetTimer);
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  const handed = takeTokenFromFragment();
  if (handed) {
    setToken(handed);
    stopSession();
    startSession();
    return;
  }
  if (!state.me) return;
  const hash = location.hash || "#/board";
  const detail = /^#\/alarm\/([0-9a-f-]{36})$/.exec(hash);
  if (hash === "#/log" && state.me.may_review_log) {
    setView("log");
    loadLog();
  } else if ((hash === "#/report" || state.reportOnly) && state.me.may_read_report) {
    setView("report");
    loadReport();
  } else if (hash === "#/night" && state.me.may_handle_alarms) {
    setView("night");
    loadNight();
    clearInterval(state.nightTimer);
    state.nightTimer = setInterval(loadNight, NIGHT_REFRESH_MS);
  } else if (detail && !state.fleetOnly) {
    openDetail(detail[1]);
  } else if (hash === "#/fleet" || state.fleetOnly) {
    setView("fleet");
    loadFleet();
    clearInterval(state.fleetTimer);
    state.fleetTimer = setInterval(loadFleet, 30000);
  } else {
    setView("board");
    board.render();
    board.rowOf(board.selectedId)?.focus();
  }
}

async function openDetail(id) {
  setView("detail");
  const body = $("detail-body");
  body.replaceChildren(h("p", { class: "loading" }, "…"));
  try {
    const data = await api(`/api/v1/console/alarms/${id}`);
    const live = model.get(id);
    if (live && Number(live.version) > Number(data.alarm.version ?? 0)) data.alarm = { ...data.alarm, ...live };
    state.detail = data;
    renderDetail(body, data, detailActions, state.me?.map_tiles);
    $("detail-title").focus();
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) body.replaceChildren(h("p", { class: "error" }, t("detail.not_found")));
    else if (!(error instanceof ApiError && error.status === 401)) body.replaceChildren(h("p", { class: "error" }, String(error.message)));
  }
}

// --- the night view (#20): tonight's planned checks and their results -----------------------------
const NIGHT_REFRESH_MS = 10000;
const NIGHT_KINDS = new Set(["supervision_not_ok", "supervision_failed", "door_opened_at_night",
  "out_of_bed", "no_movement", "floor_mat"]);

async function loadNight() {
  try {
    renderNight($("night-summary"), $("night-body"), await api("/api/v1/supervision/night"));
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notice(String(error.message || error));
  }
}

const REFUSED_DAYS = 7; // the period of the fleet view's refused messages

async function loadFleet() {
  try {
    const since = new Date(Date.now() - REFUSED_DAYS * 86400000).toISOString();
    const [health, refused] = await Promise.all([
      api("/api/v1/console/fleet-health"),
      // tenant admins only: the devices whose messages were refused, and why
      state.me?.may_review_quarantine
        ? api(`/api/v1/quarantine/devices?since=${encodeURIComponent(since)}&limit=1000`)
        : null,
    ]);
    renderFleet($("fleet-summary"), $("fleet-body"), health, refused);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notice(String(error.message || error));
  }
}

// --- the follow-up report (#21.1) -----------------------------------------------------------------
function reportMonth() {
  const input = $("report-month");
  if (!input.value) input.value = lastMonth();
  return input.value;
}

async function loadReport() {
  try {
    await renderReport($("report-body"), reportMonth());
    notice("");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      $("report-body").replaceChildren(h("p", { class: "error" }, t("report.failed", { detail: error.detail || error.message })));
    }
  }
}

async function reportCsv() {
  try {
    await downloadCsv(reportMonth());
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) notice(t("report.failed", { detail: error.detail || error.message }));
  }
}

// --- the log review (#21.2-3) ---------------------------------------------------------------------
function logPeriod() {
  const from = $("log-from");
  const to = $("log-to");
  if (!from.value || !to.value) {
    const period = defaultPeriod();
    from.value = from.value || period.from;
    to.value = to.value || period.to;
  }
  return { from: from.value, to: to.value };
}

const logActions = {
  async review(key, comment) {
    try {
      await reviewFlag(key, comment);
      await loadLog();
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) notice(t("log.review_failed", { detail: error.detail || error.message }));
    }
  },
  async extract(personId, format) {
    const { from, to } = logPeriod();
    try {
      await downloadExtract(personId, format, from, to);
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) notice(t("log.failed", { detail: error.detail || error.message }));
    }
  },
};

async function loadLog() {
  const { from, to } = logPeriod();
  const body = $("log-body");
  body.dataset.period = `${from}/${to}`;
  body.replaceChildren(h("p", { class: "loading" }, t("log.loading")));
  try {
    const data = await fetchFlags(from, to, $("log-open").checked);
    if (body.dataset.period !== `${from}/${to}`) return; // another period asked for meanwhile
    renderFlags(body, data, logActions);
    notice("");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      body.replaceChildren(h("p", { class: "error" }, t("log.failed", { detail: error.detail || error.message })));
    }
  }
}

// --- sound and language ---------------------------------------------------------------------------
function renderSound() {
  const button = $("sound");
  const s = beeper.state;
  button.dataset.state = s;
  button.textContent = t(s === "on" ? "sound.on" : s === "muted" ? "sound.off" : "sound.locked");
  button.setAttribute("aria-pressed", s === "muted" ? "true" : "false");
}

function switchLanguage() {
  setLang(getLang() === "sv" ? "en" : "sv");
  applyI18n();
  renderSound();
  setStatus(state.status);
  renderTenant();
  board.render();
  updateTitle();
  if (state.view === "detail" && state.detail) renderDetail($("detail-body"), state.detail, detailActions, state.me?.map_tiles);
  if (state.view === "fleet") loadFleet();
  if (state.view === "night") loadNight();
  if (state.view === "report") loadReport();
  if (state.view === "log") loadLog();
  const error = $("signin-error");
  if (error.dataset.key) error.textContent = t(error.dataset.key);
}

// --- keyboard --------------------------------------------------------------------------------------
function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (document.querySelector("dialog[open]")) return;
  const target = event.target;
  if (target.closest && target.closest("input, textarea, select")) return;
  if (!state.me) return;
  const key = event.key;
  if (state.fleetOnly && !["?", "l", "m", "f"].includes(key)) return;
  if (state.reportOnly && !["?", "l", "m"].includes(key)) return;
  const selected = board.selectedId;
  const handled = () => event.preventDefault();
  if (key === "?") { handled(); $("help-dialog").showModal(); }
  else if (key === "l") { handled(); switchLanguage(); }
  else if (key === "m") { handled(); beeper.toggleMute(); }
  else if (key === "b") { handled(); go("#/board"); }
  else if (key === "f") { handled(); go("#/fleet"); }
  else if (key === "Escape" && state.view !== "board") { handled(); go("#/board"); }
  else if (state.view === "detail" && state.detail && (key === "a" || key === "r")) {
    handled();
    (key === "a" ? acknowledge : openResolve)(state.detail.alarm.alarm_id);
  } else if (state.view !== "board") {
    return;
  } else if (key === "j" || key === "ArrowDown") { handled(); board.move(1); }
  else if (key === "k" || key === "ArrowUp") { handled(); board.move(-1); }
  else if ((key === "Enter" || key === "o") && selected && !target.closest("button, a")) { handled(); go(`#/alarm/${selected}`); }
  else if (key === "a" && selected) { handled(); acknowledge(selected); }
  else if (key === "r" && selected) { handled(); openResolve(selected); }
}

// --- start -----------------------------------------------------------------------------------------
function init() {
  applyI18n();
  renderSound();
  setStatus("offline");
  beeper.onChange(renderSound);
  const unlock = () => { if (!beeper.muted) beeper.unlock(); };
  // On click, not pointerdown: the sound button's text changes, and a layout shift between
  // press and release would swallow the user's first click.
  document.addEventListener("click", unlock, { once: true });
  document.addEventListener("keydown", unlock, { once: true });
  document.addEventListener("keydown", onKey);
  $("sound").addEventListener("click", () => (beeper.state === "locked" ? beeper.unlock() : beeper.toggleMute()));
  $("lang").addEventListener("click", switchLanguage);
  $("help").addEventListener("click", () => $("help-dialog").showModal());
  $("signout").addEventListener("click", () => { clearToken(); showSignin(null); });
  $("fleet-refresh").addEventListener("click", loadFleet);
  $("night-refresh").addEventListener("click", loadNight);
  $("report-show").addEventListener("click", loadReport);
  $("report-month").addEventListener("change", loadReport);
  $("report-print").addEventListener("click", () => window.print());
  $("report-csv").addEventListener("click", reportCsv);
  $("log-show").addEventListener("click", loadLog);
  $("log-open").addEventListener("change", loadLog);
  $("log-extract-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const person = $("log-person").value.trim();
    if (person) logActions.extract(person, "html");
  });
  $("resolve-form").addEventListener("submit", submitResolve);
  $("resolve-cancel").addEventListener("click", () => $("resolve-dialog").close());
  $("banner").addEventListener("click", hideBanner);
  $("signin-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    setToken(token);
    $("token").value = "";
    beeper.unlock(); // the click is the gesture that allows sound
    startSession();
  });
  window.addEventListener("hashchange", route);
  setInterval(() => {
    board.tick();
    if (state.view === "detail") tickDetail($("detail-body"));
  }, 1000);

  const handed = takeTokenFromFragment();
  if (handed) setToken(handed);
  if (getToken()) startSession();
  else showSignin(null);
}

init();
