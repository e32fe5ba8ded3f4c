// Interface text: Swedish by default, English on request. Elements carry data-i18n (text),
// data-i18n-label (aria-label and title) or data-i18n-placeholder.
//
// The two dictionaries are written as JSON (quoted keys, double-quoted strings; only
// trailing commas besides): tests/unit/test_console_translations.py reads them and fails
// when an alarm kind, a reason or any other code the gateway sends lacks a language.
// A text that counts something has plural forms {"one": …, "other": …}, chosen by
// Intl.PluralRules (see count()).

const sv = {
  "app.title": "Nattillsyn",
  "skip": "Hoppa till innehållet",
  "nav.board": "Larm",
  "nav.fleet": "Enheter",
  "nav.help": "Kortkommandon",
  "nav.signout": "Logga ut",
  "lang.switch": "English",
  "sound.on": "Ljud på",
  "sound.off": "Ljud av",
  "sound.locked": "Klicka för att slå på ljud",
  "conn.connecting": "Ansluter…",
  "conn.live": "Live",
  "conn.reconnecting": "Återansluter…",
  "conn.offline": "Frånkopplad",
  "signin.title": "Logga in",
  "signin.intro": "Klistra in din åtkomsttoken (samma som för API:et), eller logga in via organisationens inloggning som skickar dig tillbaka hit.",
  "signin.token": "Åtkomsttoken",
  "signin.submit": "Logga in",
  "signin.expired": "Din inloggning har gått ut eller är ogiltig. Logga in igen.",
  "signin.role": "Din roll får inte hantera larm.",
  "signin.failed": "Inloggningen misslyckades.",
  "board.title": "Öppna larm",
  "board.empty": "Inga öppna larm.",
  "board.count": "{open}, {unacked}",
  "count.open_alarms": { "one": "{n} öppet larm", "other": "{n} öppna larm" },
  "count.unacknowledged": { "one": "{n} okvitterat", "other": "{n} okvitterade" },
  "board.new": "Nytt larm: {kind} – {ref}",
  "col.state": "Status",
  "col.kind": "Typ",
  "col.severity": "Allvar",
  "col.person": "Brukare",
  "col.age": "Ålder",
  "col.occurrences": "Antal",
  "col.escalation": "Eskalering",
  "col.actions": "Åtgärder",
  "act.ack": "Kvittera",
  "act.resolve": "Avsluta",
  "act.detail": "Detaljer",
  "act.back": "Tillbaka till larmen",
  "act.cancel": "Avbryt",
  "act.refresh": "Uppdatera",
  "ack.failed": "Kunde inte kvittera: {detail}",
  "resolve.failed": "Kunde inte avsluta: {detail}",
  "resolve.title": "Avsluta larm",
  "resolve.outcome": "Utfall",
  "resolve.choose": "Välj utfall…",
  "resolve.note": "Anteckning",
  "resolve.note_required": "Beskriv utfallet.",
  "resolve.submit": "Avsluta larmet",
  "outcome.visited_ok": "Besök gjort – allt väl",
  "outcome.helped_phone": "Hjälp via telefon/talkontakt",
  "outcome.ambulance": "Ambulans larmad",
  "outcome.false_alarm": "Falsklarm eller oavsiktligt larm",
  "outcome.technical": "Tekniskt fel åtgärdat",
  "outcome.other": "Annat (beskriv)",
  "state.raised": "Nytt",
  "state.acknowledged": "Kvitterat",
  "state.resolved": "Avslutat",
  "severity.critical": "Kritisk",
  "severity.high": "Hög",
  "severity.medium": "Medel",
  "severity.low": "Låg",
  "kind.button": "Larmknapp",
  "kind.fall": "Fall",
  "kind.geofence_exit": "Utanför säker zon",
  "kind.tamper": "Sabotage",
  "kind.device_silent": "Tyst enhet",
  "kind.receiver_unreachable": "Larmmottagare nås inte",
  "kind.battery_low": "Lågt batteri",
  "kind.blood_pressure": "Blodtryck",
  "kind.weight_gain": "Viktökning",
  "kind.door_unlocked": "Dörr olåst",
  "kind.unauthorised_unlock": "Obehörig upplåsning",
  "group.night_team": "Nattpatrull",
  "group.home_care": "Hemtjänst",
  "group.relative": "Anhörig",
  "group.regional_clinic": "Regionens mottagning",
  "group.technicians": "Tekniker",
  "escalation.level": "Nivå {n}",
  "condition.cleared": "upphört",
  "detail.title": "Larm",
  "detail.person": "Brukare (referens)",
  "detail.notes": "Omsorgsanteckningar",
  "detail.no_notes": "Inga anteckningar.",
  "detail.no_person": "Enheten är inte tilldelad någon brukare.",
  "detail.device": "Enhet",
  "detail.battery": "Batteri",
  "detail.last_seen": "Senast hörd",
  "detail.online": "Ansluten",
  "detail.raised": "Larmat",
  "detail.last": "Senaste",
  "detail.acknowledged": "Kvitterat av",
  "detail.outcome": "Utfall",
  "detail.recipients": "Mottagare",
  "detail.track": "Spår {hours} bakåt ({positions})",
  "count.hours": { "one": "{n} timme", "other": "{n} timmar" },
  "count.positions": { "one": "{n} position", "other": "{n} positioner" },
  "count.safe_zones": { "one": "{n} säker zon", "other": "{n} säkra zoner" },
  "count.devices_in_service": { "one": "{n} enhet i drift", "other": "{n} enheter i drift" },
  "detail.zones": { "one": "Säker zon", "other": "Säkra zoner" },
  "detail.reason": "Orsak",
  "detail.time_zone": "Tider i tidszon {zone}",
  "detail.legend": "Linje: spår · stor punkt: senaste position · kryss: position vid larmet · fält: säker zon",
  "detail.not_found": "Larmet finns inte (eller hör till en annan huvudman).",
  "map.label": "Karta: {positions} och {zones}",
  "map.empty": "Inga positioner",
  "fleet.title": "Enheternas hälsa",
  "fleet.silent": "Tysta enheter",
  "fleet.low_battery": "Lågt batteri",
  "fleet.never_seen": "Aldrig hörda sedan registrering",
  "fleet.none": "Inga.",
  "fleet.summary": "{devices}. Tyst efter {f} × rapportintervallet + {g} s; lågt batteri vid högst {b} %.",
  "fleet.registered": "Registrerad",
  "fleet.type": "Typ",
  "fleet.status": "Status",
  "yes": "Ja",
  "no": "Nej",
  "unknown": "okänt",
  "never": "aldrig",
  "help.title": "Kortkommandon",
  "help.close": "Stäng",
  "key.next": "nästa larm",
  "key.prev": "föregående larm",
  "key.open": "öppna detaljer",
  "key.ack": "kvittera markerat larm",
  "key.resolve": "avsluta markerat larm",
  "key.board": "larmtavlan",
  "key.fleet": "enheternas hälsa",
  "key.mute": "ljud av/på",
  "key.lang": "byt språk",
  "key.help": "visa kortkommandon",
  "key.back": "stäng dialog / tillbaka",
  "tenant": "Huvudman",
  "device_type.gps_alarm": "GPS-larm",
  "device_type.scale": "Våg",
  "device_type.blood_pressure_monitor": "Blodtrycksmätare",
  "device_type.door_lock": "Dörrlås",
  "status.in_stock": "I lager",
  "status.active": "Utlämnad",
  "status.returned": "Återlämnad",
  "status.retired": "Avvecklad",
  "reason.visit": "Planerat besök",
  "reason.alarm_open": "Öppet larm för brukaren",
  "reason.key_missing": "Ingen nyckel angiven",
  "reason.key_unknown": "Okänd nyckel",
  "reason.key_other_tenant": "Nyckeln hör till en annan huvudman",
  "reason.key_revoked": "Nyckeln är spärrad",
  "reason.key_not_valid": "Nyckeln gäller inte vid den tidpunkten",
  "reason.staff_inactive": "Nyckelns medarbetare är inte längre aktiv",
  "reason.command_expired": "Fjärrkommandot hade gått ut",
  "reason.no_person": "Låset är inte kopplat till någon brukare",
  "reason.outside_window": "Utanför det planerade besöket",
  "reason.no_visit": "Inget planerat besök",
  "reason.offline": "Enheten meddelade att den kopplats från",
  "reason.no_message": "Inget meddelande inom förväntad tid",
  "reason.zone_inactive": "Den säkra zonens tidsfönster har tagit slut",
  "breach.systolic_high": "Systoliskt tryck över gränsen",
  "breach.systolic_low": "Systoliskt tryck under gränsen",
  "breach.diastolic_high": "Diastoliskt tryck över gränsen",
  "breach.diastolic_low": "Diastoliskt tryck under gränsen",
  "breach.pulse_high": "Puls över gränsen",
  "breach.pulse_low": "Puls under gränsen",
};

const en = {
  "app.title": "Night supervision",
  "skip": "Skip to content",
  "nav.board": "Alarms",
  "nav.fleet": "Devices",
  "nav.help": "Shortcuts",
  "nav.signout": "Sign out",
  "lang.switch": "Svenska",
  "sound.on": "Sound on",
  "sound.off": "Sound off",
  "sound.locked": "Click to enable sound",
  "conn.connecting": "Connecting…",
  "conn.live": "Live",
  "conn.reconnecting": "Reconnecting…",
  "conn.offline": "Disconnected",
  "signin.title": "Sign in",
  "signin.intro": "Paste your access token (the same as for the API), or sign in through your organisation's login, which sends you back here.",
  "signin.token": "Access token",
  "signin.submit": "Sign in",
  "signin.expired": "Your sign-in has expired or is not valid. Please sign in again.",
  "signin.role": "Your role may not handle alarms.",
  "signin.failed": "Sign-in failed.",
  "board.title": "Open alarms",
  "board.empty": "No open alarms.",
  "board.count": "{open}, {unacked}",
  "count.open_alarms": { "one": "{n} open alarm", "other": "{n} open alarms" },
  "count.unacknowledged": { "one": "{n} unacknowledged", "other": "{n} unacknowledged" },
  "board.new": "New alarm: {kind} – {ref}",
  "col.state": "State",
  "col.kind": "Kind",
  "col.severity": "Severity",
  "col.person": "Person",
  "col.age": "Age",
  "col.occurrences": "Count",
  "col.escalation": "Escalation",
  "col.actions": "Actions",
  "act.ack": "Acknowledge",
  "act.resolve": "Resolve",
  "act.detail": "Details",
  "act.back": "Back to alarms",
  "act.cancel": "Cancel",
  "act.refresh": "Refresh",
  "ack.failed": "Could not acknowledge: {detail}",
  "resolve.failed": "Could not resolve: {detail}",
  "resolve.title": "Resolve alarm",
  "resolve.outcome": "Outcome",
  "resolve.choose": "Choose an outcome…",
  "resolve.note": "Note",
  "resolve.note_required": "Describe the outcome.",
  "resolve.submit": "Resolve the alarm",
  "outcome.visited_ok": "Visited – all well",
  "outcome.helped_phone": "Helped by phone or voice link",
  "outcome.ambulance": "Ambulance called",
  "outcome.false_alarm": "False or accidental alarm",
  "outcome.technical": "Technical fault handled",
  "outcome.other": "Other (describe)",
  "state.raised": "New",
  "state.acknowledged": "Acknowledged",
  "state.resolved": "Resolved",
  "severity.critical": "Critical",
  "severity.high": "High",
  "severity.medium": "Medium",
  "severity.low": "Low",
  "kind.button": "Alarm button",
  "kind.fall": "Fall",
  "kind.geofence_exit": "Left safe zone",
  "kind.tamper": "Tamper",
  "kind.device_silent": "Silent device",
  "kind.receiver_unreachable": "Alarm receiver unreachable",
  "kind.battery_low": "Low battery",
  "kind.blood_pressure": "Blood pressure",
  "kind.weight_gain": "Weight gain",
  "kind.door_unlocked": "Door unlocked",
  "kind.unauthorised_unlock": "Unauthorised unlock",
  "group.night_team": "Night team",
  "group.home_care": "Home care",
  "group.relative": "Relative",
  "group.regional_clinic": "Regional clinic",
  "group.technicians": "Technicians",
  "escalation.level": "Level {n}",
  "condition.cleared": "cleared",
  "detail.title": "Alarm",
  "detail.person": "Person (reference)",
  "detail.notes": "Care notes",
  "detail.no_notes": "No notes.",
  "detail.no_person": "The device is not assigned to a person.",
  "detail.device": "Device",
  "detail.battery": "Battery",
  "detail.last_seen": "Last seen",
  "detail.online": "Online",
  "detail.raised": "Raised",
  "detail.last": "Latest",
  "detail.acknowledged": "Acknowledged by",
  "detail.outcome": "Outcome",
  "detail.recipients": "Recipients",
  "detail.track": "Track of the last {hours} ({positions})",
  "count.hours": { "one": "{n} hour", "other": "{n} hours" },
  "count.positions": { "one": "{n} position", "other": "{n} positions" },
  "count.safe_zones": { "one": "{n} safe zone", "other": "{n} safe zones" },
  "count.devices_in_service": { "one": "{n} device in service", "other": "{n} devices in service" },
  "detail.zones": { "one": "Safe zone", "other": "Safe zones" },
  "detail.reason": "Reason",
  "detail.time_zone": "Times in time zone {zone}",
  "detail.legend": "Line: track · large dot: latest position · cross: position at the alarm · area: safe zone",
  "detail.not_found": "The alarm does not exist (or belongs to another organisation).",
  "map.label": "Map: {positions} and {zones}",
  "map.empty": "No positions",
  "fleet.title": "Fleet health",
  "fleet.silent": "Silent devices",
  "fleet.low_battery": "Low battery",
  "fleet.never_seen": "Never seen since registration",
  "fleet.none": "None.",
  "fleet.summary": "{devices}. Silent after {f} × the reporting interval + {g} s; low battery at {b} % or less.",
  "fleet.registered": "Registered",
  "fleet.type": "Type",
  "fleet.status": "Status",
  "yes": "Yes",
  "no": "No",
  "unknown": "unknown",
  "never": "never",
  "help.title": "Keyboard shortcuts",
  "help.close": "Close",
  "key.next": "next alarm",
  "key.prev": "previous alarm",
  "key.open": "open details",
  "key.ack": "acknowledge the selected alarm",
  "key.resolve": "resolve the selected alarm",
  "key.board": "alarm board",
  "key.fleet": "fleet health",
  "key.mute": "sound on/off",
  "key.lang": "switch language",
  "key.help": "show shortcuts",
  "key.back": "close dialog / back",
  "tenant": "Organisation",
  "device_type.gps_alarm": "GPS alarm",
  "device_type.scale": "Scale",
  "device_type.blood_pressure_monitor": "Blood pressure monitor",
  "device_type.door_lock": "Door lock",
  "status.in_stock": "In stock",
  "status.active": "Handed out",
  "status.returned": "Returned",
  "status.retired": "Retired",
  "reason.visit": "Planned visit",
  "reason.alarm_open": "An alarm is open for the person",
  "reason.key_missing": "No key given",
  "reason.key_unknown": "Unknown key",
  "reason.key_other_tenant": "The key belongs to another organisation",
  "reason.key_revoked": "The key is revoked",
  "reason.key_not_valid": "The key is not valid at that time",
  "reason.staff_inactive": "The key's staff member is no longer active",
  "reason.command_expired": "The remote command had expired",
  "reason.no_person": "The lock is not assigned to a person",
  "reason.outside_window": "Outside the planned visit",
  "reason.no_visit": "No planned visit",
  "reason.offline": "The device reported going offline",
  "reason.no_message": "No message within the expected time",
  "reason.zone_inactive": "The safe zone's time window ended",
  "breach.systolic_high": "Systolic pressure above the limit",
  "breach.systolic_low": "Systolic pressure below the limit",
  "breach.diastolic_high": "Diastolic pressure above the limit",
  "breach.diastolic_low": "Diastolic pressure below the limit",
  "breach.pulse_high": "Pulse above the limit",
  "breach.pulse_low": "Pulse below the limit",
};

export const MESSAGES = { sv, en };
const STORAGE_KEY = "wg.console.lang";
let lang = "sv";
try {
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved && saved in MESSAGES) lang = saved;
} catch {
  /* storage may be disabled */
}

export function getLang() {
  return lang;
}

export function setLang(next) {
  lang = next in MESSAGES ? next : "sv";
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    /* storage may be disabled */
  }
  document.documentElement.lang = lang;
}

const pluralRules = new Map();

/** The plural category ("one", "other", …) of ``n`` in the current language. */
export function pluralOf(n) {
  let rules = pluralRules.get(lang);
  if (!rules) {
    rules = new Intl.PluralRules(lang);
    pluralRules.set(lang, rules);
  }
  return rules.select(Number(n));
}

function fill(text, vars) {
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/**
 * The text for ``key`` with {placeholders} filled; an unknown key is shown as is. A text
 * with plural forms ({one, other}) is chosen by Intl.PluralRules for ``vars.n``.
 */
export function t(key, vars = {}) {
  let text = MESSAGES[lang][key] ?? MESSAGES.sv[key] ?? key;
  if (typeof text === "object") text = text[pluralOf(vars.n ?? 0)] ?? text.other;
  return fill(text, vars);
}

/** A counted noun: count("count.safe_zones", 1) is "1 säker zon", with 2 "2 säkra zoner". */
export function count(key, n) {
  return t(key, { n });
}

/** Like t(), for codes from the API (kinds, states, groups, reasons): falls back to the code. */
export function label(prefix, code) {
  const key = `${prefix}.${code}`;
  return key in MESSAGES[lang] ? MESSAGES[lang][key] : String(code);
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang;
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nLabel));
    node.title = t(node.dataset.i18nLabel);
  }
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
}
