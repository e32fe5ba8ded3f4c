"""The console's pure modules (stream parser, alarm model, backoff, projection) run in the
real browser, and the static route serves only the console's own files."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from api.routes import console
from tests.e2e.browser import browser
from tests.e2e.stack import with_csp
from tests.integration.harness import serving


@contextlib.asynccontextmanager
async def console_only() -> AsyncIterator[str]:
    app = FastAPI()
    app.include_router(console.router)
    async with serving(with_csp(app)) as base:
        yield base


async def test_static_route_serves_only_console_files() -> None:
    async with console_only() as base, httpx.AsyncClient(base_url=base) as http:
        r = await http.get("/console", follow_redirects=False)
        assert r.status_code == 308 and r.headers["location"] == "/console/"
        r = await http.get("/console/")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "<script>" not in r.text and " style=" not in r.text  # nothing inline
        r = await http.get("/console/js/sse.js")
        assert r.headers["content-type"].startswith("text/javascript")
        for path in ("/console/../routes/console.py", "/console/%2e%2e/routes/console.py",
                     "/console/js/../../auth.py", "/console/nope.js", "/console/js",
                     "/console/%2e%2e/%2e%2e/docs/console-board.png"):  # fmt: skip
            assert (await http.get(path)).status_code == 404, path


async def test_parser_model_backoff_and_projection_in_the_browser() -> None:
    async with console_only() as base, browser(base) as page:
        await page.open("/console/")
        await page.wait_css("#token", "the page")
        result = await page.js_async("""
            const done = arguments[arguments.length - 1];
            (async () => {
              const { EventStreamParser, backoffMs } = await import('/console/js/sse.js');
              const { AlarmModel } = await import('/console/js/alarms.js');
              const { makeProjection } = await import('/console/js/map.js');
              const out = {};
              // Every split of a CRLF stream into two chunks yields the same events.
              const text = ': keepalive\\r\\n\\r\\nretry: 2000\\r\\n\\r\\n'
                + 'id: 7\\r\\nevent: alarm\\r\\n'
                + 'data: {"a":1}\\r\\ndata: {"b":2}\\r\\n\\r\\n'
                + 'id: 8\\nevent: resync\\ndata: {}\\n\\n';
              const seen = new Set();
              for (let i = 0; i <= text.length; i++) {
                const p = new EventStreamParser();
                const events = [...p.feed(text.slice(0, i)), ...p.feed(text.slice(i))];
                seen.add(JSON.stringify(events));
              }
              out.splits = [...seen];
              // Versions: never older, never twice; resolved leaves and stays gone.
              const m = new AlarmModel();
              const a = (v, state = 'raised', severity = 'high', id = 'x',
                         raised = '2025-01-01T00:00:00Z') =>
                ({ alarm_id: id, version: v, state, severity, raised_at: raised });
              out.model = [m.apply(a(1)), m.apply(a(1)), m.apply(a(3, 'acknowledged')),
                           m.apply(a(2)), m.get('x').state, m.apply(a(4, 'resolved')),
                           m.apply(a(3, 'acknowledged')), m.size];
              m.apply(a(1, 'raised', 'low', 'low-new', '2025-01-02T00:00:00Z'));
              m.apply(a(1, 'raised', 'critical', 'crit-old', '2025-01-01T00:00:00Z'));
              m.apply(a(1, 'raised', 'critical', 'crit-new', '2025-01-01T01:00:00Z'));
              out.order = m.sorted().map((x) => x.alarm_id);
              out.backoff = [0, 1, 5, 20].map((n) => [backoffMs(n, 500, 30000, () => 0),
                                                      backoffMs(n, 500, 30000, () => 1)]);
              // 1 km north is 1000 m * scale pixels straight up.
              const proj = makeProjection([[59.0, 18.0], [59.0 + 1000 / 110574, 18.0]],
                                          { width: 600, height: 400, pad: 0 });
              const [x0, y0] = proj.xy(59.0, 18.0);
              const [x1, y1] = proj.xy(59.0 + 1000 / 110574, 18.0);
              out.projection = [x1 - x0, (y0 - y1) / proj.scale];
              done(out);
            })().catch((e) => done({ error: String(e.stack || e) }));
        """)
        assert "error" not in result, result
        assert len(result["splits"]) == 1
        import json

        events = json.loads(result["splits"][0])
        assert events == [
            {"id": "7", "event": "alarm", "data": '{"a":1}\n{"b":2}'},
            {"id": "8", "event": "resync", "data": "{}"},
        ]
        assert result["model"] == [
            "new", "ignored", "changed", "ignored", "acknowledged", "removed", "ignored", 0
        ]  # fmt: skip
        assert result["order"] == ["crit-new", "crit-old", "low-new"]
        assert result["backoff"] == [[250, 500], [500, 1000], [8000, 16000], [15000, 30000]]
        dx, metres = result["projection"]
        assert abs(dx) < 1e-6 and abs(metres - 1000) < 0.5
