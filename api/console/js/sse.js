// Server-Sent Events over fetch(): EventSource cannot send an Authorization header.
// A ReadableStream parser (the WHATWG event-stream format), reconnection with exponential
// backoff, and resumption with Last-Event-ID so nothing is missed or repeated.

/** Incremental parser: feed decoded text, get complete events {id, event, data}. */
export class EventStreamParser {
  constructor() {
    this.buffer = "";
    this.reset();
    this.lastEventId = "";
    this.retry = null;
  }

  reset() {
    this.eventType = "";
    this.dataLines = [];
  }

  /** @returns {Array<{id: string, event: string, data: string}>} */
  feed(text) {
    const out = [];
    this.buffer += text;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      const event = this.line(line);
      if (event) out.push(event);
    }
    return out;
  }

  line(line) {
    if (line === "") {
      if (this.dataLines.length === 0) {
        this.reset();
        return null;
      }
      const event = {
        id: this.lastEventId,
        event: this.eventType || "message",
        data: this.dataLines.join("\n"),
      };
      this.reset();
      return event;
    }
    if (line.startsWith(":")) return null; // a comment (keepalive)
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.dataLines.push(value);
    else if (field === "event") this.eventType = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }
}

/** The delay before reconnect attempt ``n`` (0-based): exponential, capped, with jitter. */
export function backoffMs(n, baseMs = 500, capMs = 30000, random = Math.random) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(n, 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/**
 * A live stream that keeps itself connected.
 * options: url, token() -> string, lastEventId, onEvent({id, event, data}),
 * onStatus("connecting" | "live" | "reconnecting"), onUnauthorized(), idleTimeoutMs
 */
export class LiveStream {
  constructor(options) {
    this.options = { idleTimeoutMs: 45000, ...options };
    this.lastEventId = options.lastEventId || "";
    this.attempt = 0;
    this.stopped = false;
    this.controller = null;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  /** Drop the current connection now (and reconnect with backoff). */
  drop() {
    if (this.controller) this.controller.abort();
  }

  async connect() {
    if (this.stopped) return;
    const { url, token, onEvent, onStatus, onUnauthorized, idleTimeoutMs } = this.options;
    onStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    const controller = new AbortController();
    this.controller = controller;
    let idle = null;
    const touch = () => {
      clearTimeout(idle);
      // The server sends a keepalive every 15 s: silence longer than this is a dead link.
      idle = setTimeout(() => controller.abort(), idleTimeoutMs);
    };
    try {
      const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token()}` };
      if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
      touch();
      const response = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
      if (response.status === 401) {
        clearTimeout(idle);
        this.stopped = true;
        onUnauthorized();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new EventStreamParser();
      parser.lastEventId = this.lastEventId;
      this.attempt = 0;
      onStatus("live");
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        touch();
        for (const event of parser.feed(value)) {
          if (event.id) this.lastEventId = event.id;
          onEvent(event);
        }
      }
    } catch (error) {
      if (this.stopped) return;
    } finally {
      clearTimeout(idle);
    }
    if (this.stopped) return;
    onStatus("reconnecting");
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), delay);
  }
}
