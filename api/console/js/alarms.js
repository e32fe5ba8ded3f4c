// The board's model: open alarms by id, merged from the snapshot and the stream.
// De-duplicated by alarm id + version (an older or equal version never replaces a newer
// one); resolved alarms leave the board and are remembered so a stale copy cannot return.
// Pure: no DOM, no I/O.

export const SEVERITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };

export function compareAlarms(a, b) {
  const bySeverity = (SEVERITY_RANK[a.severity] ?? 9) - (SEVERITY_RANK[b.severity] ?? 9);
  if (bySeverity !== 0) return bySeverity;
  const byTime = Date.parse(b.raised_at) - Date.parse(a.raised_at);
  if (byTime !== 0) return byTime;
  return a.alarm_id < b.alarm_id ? -1 : a.alarm_id > b.alarm_id ? 1 : 0;
}

export class AlarmModel {
  constructor() {
    this.open = new Map(); // alarm_id -> alarm
    this.versions = new Map(); // alarm_id -> highest version seen (also of resolved ones)
  }

  /**
   * Apply one alarm snapshot.
   * @returns {"new" | "changed" | "removed" | "ignored"}
   */
  apply(alarm) {
    const id = alarm.alarm_id;
    const version = Number(alarm.version ?? 0);
    const seen = this.versions.get(id);
    if (seen !== undefined && version <= seen) return "ignored";
    this.versions.set(id, version);
    if (alarm.state === "resolved") {
      return this.open.delete(id) ? "removed" : "ignored";
    }
    const isNew = !this.open.has(id);
    this.open.set(id, alarm);
    return isNew ? "new" : "changed";
  }

  /** Replace everything with a fresh snapshot (after a resync). */
  replace(alarms) {
    this.open.clear();
    for (const alarm of alarms) {
      this.versions.delete(alarm.alarm_id);
      this.apply(alarm);
    }
  }

  get(id) {
    return this.open.get(id);
  }

  sorted() {
    return [...this.open.values()].sort(compareAlarms);
  }

  get size() {
    return this.open.size;
  }
}
