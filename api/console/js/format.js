// Times and durations for display. Pure.

/** "45 s", "12 min", "3 h 5 min", "2 d 4 h" */
export function formatAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h} h ${m % 60} min`;
  const d = Math.floor(h / 24);
  return `${d} d ${h % 24} h`;
}

export function formatTime(iso, lang) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(lang === "sv" ? "sv-SE" : "en-GB", {
    dateStyle: "short",
    timeStyle: "medium",
  });
}
