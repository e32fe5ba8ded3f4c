// The audible cue: a short two-tone beep made with WebAudio (no sound file). Browsers
// allow audio only after a user gesture, so the context is created or resumed on the first
// click or key press; until then the page shows that sound is waiting for a click.

const KEY = "wg.console.muted";

export class Beeper {
  constructor() {
    this.context = null;
    this.muted = localStorage.getItem(KEY) === "1";
    this.listeners = new Set();
  }

  /** "muted" | "locked" (waiting for a gesture) | "on" */
  get state() {
    if (this.muted) return "muted";
    if (!this.context || this.context.state !== "running") return "locked";
    return "on";
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this.state);
  }

  /** Call from a user gesture handler. */
  unlock() {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!this.context) this.context = new Context();
    if (this.context.state === "suspended") {
      this.context.resume().then(() => this.changed(), () => {});
    }
    this.changed();
  }

  toggleMute() {
    this.muted = !this.muted;
    localStorage.setItem(KEY, this.muted ? "1" : "0");
    if (!this.muted) this.unlock();
    this.changed();
  }

  beep() {
    if (this.state !== "on") return false;
    const ctx = this.context;
    const now = ctx.currentTime;
    for (const [i, freq] of [880, 660].entries()) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = "sine";
      osc.frequency.value = freq;
      const start = now + i * 0.22;
      gain.gain.setValueAtTime(0.0001, start);
      gain.gain.exponentialRampToValueAtTime(0.3, start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.2);
      osc.connect(gain).connect(ctx.destination);
      osc.start(start);
      osc.stop(start + 0.21);
    }
    return true;
  }
}
