// Times, ages and counts for display. Every time is shown in the tenant's time zone
// (Europe/Stockholm unless the server says otherwise), in one format, whatever the
// browser's own locale and time zone are. Pure apart from the time zone setting.

export const DEFAULT_TIME_ZONE = "Europe/Stockholm";
let timeZone = DEFAULT_TIME_ZONE;
let dateTimeFormat = null;

/** Set the time zone every time is shown in (an unknown zone keeps Europe/Stockholm). */
export function setTimeZone(zone) {
  let next = DEFAULT_TIME_ZONE;
  if (zone) {
    try {
      new Intl.DateTimeFormat("en", { timeZone: zone });
      next = zone;
    } catch {
      /* not a zone this browser knows: keep the default */
    }
  }
  if (next !== timeZone) dateTimeFormat = null;
  timeZone = next;
}

export function getTimeZone() {
  return timeZone;
}

function formatter() {
  // Parts only (no locale's order or separators): "2025-01-05 21:14:03" in both languages.
  dateTimeFormat ??= new Intl.DateTimeFormat("en-GB", {
    timeZone,
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
  });
  return dateTimeFormat;
}

/** "2025-01-05 21:14:03": the moment in the tenant's time zone; "" for none. */
export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  const part = Object.fromEntries(formatter().formatToParts(date).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second}`;
}

const relativeFormats = new Map();

/** How long ago ``ms`` milliseconds is, in words: "för 3 minuter sedan", "3 minutes ago". */
export function formatAgo(ms, lang) {
  const s = Math.max(0, Math.floor(ms / 1000));
  let value;
  let unit;
  if (s < 60) [value, unit] = [s, "second"];
  else if (s < 3600) [value, unit] = [Math.floor(s / 60), "minute"];
  else if (s < 86400) [value, unit] = [Math.floor(s / 3600), "hour"];
  else [value, unit] = [Math.floor(s / 86400), "day"];
  // "auto" only for 0 s ("nu", "now"); always numbers otherwise ("för 1 dag sedan", not
  // "i går": a night shift crosses midnight).
  const numeric = value === 0 ? "auto" : "always";
  let format = relativeFormats.get(`${lang}/${numeric}`);
  if (!format) {
    format = new Intl.RelativeTimeFormat(lang, { numeric, style: "long" });
    relativeFormats.set(`${lang}/${numeric}`, format);
  }
  return format.format(-value, unit);
}

/** The time and how long ago: "2025-01-05 21:14:03 (för 3 minuter sedan)". */
export function formatTimeAgo(iso, lang, now = Date.now()) {
  return `${formatTime(iso)} (${formatAgo(now - Date.parse(iso), lang)})`;
}
