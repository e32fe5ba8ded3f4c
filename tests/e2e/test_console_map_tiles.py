"""Optional map tiles behind the alarm detail's track (``console.map_tile_url``), in a real
headless Chromium under the product's own Content-Security-Policy.

A map tile service (OpenStreetMap or a municipality's own) is outside the product: here a
tiny tile server on a free loopback port stands in for it. It serves one small valid PNG for
any ``/{z}/{x}/{y}.png`` and records what was asked for. Being on another port, it is
another origin than the API, so the browser loads the tiles only if the CSP allows it.
"""

from __future__ import annotations

import contextlib
import math
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Response

from tests.e2e.browser import Page, browser
from tests.e2e.stack import auth, console_stack, token
from tests.e2e.test_console_detail_fleet import (
    HOME,
    WALK,
    _positions_stored,
    add_home_zone,
    walk_messages,
)
from tests.e2e.test_console_modules import console_only
from tests.integration.harness import publish, seed, serving, wait_for

ATTRIBUTION = "© OpenStreetMap contributors"
MERCATOR_M_PER_PX_Z0 = 156543.03392  # 2πR / 256


def png(size: int = 256, grey: int = 70) -> bytes:
    """A valid greyscale PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + bytes([grey]) * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )  # fmt: skip


class TileServer:
    def __init__(self) -> None:
        self.requests: list[tuple[int, int, int]] = []
        self.image = png()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/{z}/{x}/{y}.png")
        async def tile(z: int, x: int, y: int) -> Response:
            self.requests.append((z, x, y))
            return Response(self.image, media_type="image/png")

        return app


@contextlib.asynccontextmanager
async def tile_server() -> AsyncIterator[tuple[str, TileServer]]:
    tiles = TileServer()
    async with serving(tiles.app()) as base:
        yield base, tiles


def tile_xy(lat: float, lon: float, z: int) -> tuple[float, float]:
    """Fractional XYZ tile coordinates (Web Mercator)."""
    n = 2**z
    r = math.radians(lat)
    return (lon + 180) / 360 * n, (1 - math.asinh(math.tan(r)) / math.pi) / 2 * n


async def record_csp_violations(page: Page) -> None:
    await page.js("""
        window.cspViolations = [];
        document.addEventListener('securitypolicyviolation',
            (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
    """)


async def test_detail_draws_map_tiles_from_the_configured_server(mosquitto, database_url) -> None:
    s = await seed(database_url)
    person = s.persons["gps-1"]
    async with tile_server() as (tile_base, tiles), console_stack(
        mosquitto.url, database_url, test_csp=False,
        console={"map_tile_url": f"{tile_base}/{{z}}/{{x}}/{{y}}.png",
                 "map_attribution": ATTRIBUTION},
    ) as (base, gw), httpx.AsyncClient(base_url=base, timeout=10) as http, \
            browser(base) as page:  # fmt: skip
        # The page learns the setting, and the CSP allows the tile server's origin only.
        me = await http.get("/api/v1/console/me", headers=auth(s.tenant))
        assert me.json()["map_tiles"] == {
            "url": f"{tile_base}/{{z}}/{{x}}/{{y}}.png", "attribution": ATTRIBUTION,
            "max_zoom": 19,
        }  # fmt: skip
        csp = (await http.get("/console/")).headers["content-security-policy"]
        assert f"img-src 'self' data: {tile_base};" in csp
        await add_home_zone(http, gw, s.tenant, person)
        await page.sign_in_with_fragment(token(s.tenant))
        await record_csp_violations(page)
        await publish(mosquitto.url, walk_messages())
        await page.wait_css('tr[data-kind="geofence_exit"]', "the geofence alarm")
        alarm_id = await page.attr('tr[data-kind="geofence_exit"]', "data-alarm-id")
        await wait_for(lambda: _positions_stored(database_url, len(WALK)), 10, "positions stored")
        assert tiles.requests == []  # nothing fetched before a map is shown

        await page.click(f'tr[data-alarm-id="{alarm_id}"] a[data-action="detail"]')
        await page.wait_css("svg.track-map polyline.track", "the track")
        drawn: list[dict[str, Any]] = await page.js("""
            return [...document.querySelectorAll('svg.track-map g.map-tiles image.tile')].map(
              (i) => ({href: i.getAttribute('href'), z: Number(i.dataset.z),
                       x: Number(i.dataset.x), y: Number(i.dataset.y),
                       rect: ['x', 'y', 'width', 'height'].map((a) => Number(i.getAttribute(a)))}));
        """)
        assert 1 <= len(drawn) <= 36
        assert all(d["href"] == f"{tile_base}/{d['z']}/{d['x']}/{d['y']}.png" for d in drawn)
        # The zoom whose metres per tile pixel best match the drawing's: the zone's radius
        # gives the drawing's pixels per metre.
        r_px = float(await page.attr("circle.zone", "r") or 0)
        px_per_m = r_px / 200
        mercator = MERCATOR_M_PER_PX_Z0 * math.cos(math.radians(HOME[0]))
        z = round(math.log2(mercator * px_per_m))
        assert z == 15  # a walk of ~700 m drawn 640 px wide
        assert {d["z"] for d in drawn} == {z}
        for d in drawn:  # a 256 px tile is drawn at 256 px, give or take a factor of √2
            assert 256 / math.sqrt(2) < d["rect"][2] < 256 * math.sqrt(2)
        # The tiles cover the whole view (640 x 420).
        assert min(d["rect"][0] for d in drawn) <= 0 and min(d["rect"][1] for d in drawn) <= 0
        assert max(d["rect"][0] + d["rect"][2] for d in drawn) >= 640
        assert max(d["rect"][1] + d["rect"][3] for d in drawn) >= 420
        # Drawn under the zones and the track.
        order = await page.js("""
            return [...document.querySelector('svg.track-map').children]
              .map((c) => c.getAttribute('class'));
        """)
        assert order.index("map-tiles") < order.index("zones") < order.index("track")
        # Each tile lines up with the projection: home (the zone's centre) lies in its tile
        # where Web Mercator puts it.
        fx, fy = tile_xy(HOME[0], HOME[1], z)
        home_tile = next(d for d in drawn if (d["x"], d["y"]) == (int(fx), int(fy)))
        x, y, w, h = home_tile["rect"]
        cx = float(await page.attr("circle.zone", "cx") or 0)
        cy = float(await page.attr("circle.zone", "cy") or 0)
        assert abs(x + (fx - int(fx)) * (w - 0.5) - cx) < 1
        assert abs(y + (fy - int(fy)) * (h - 0.5) - cy) < 1

        # The browser fetched exactly those tiles from the tile server, at that zoom.
        wanted = {(d["z"], d["x"], d["y"]) for d in drawn}

        async def all_fetched() -> bool:
            return wanted <= set(tiles.requests)

        await wait_for(all_fetched, 10, "the tiles fetched")
        assert set(tiles.requests) == wanted
        shown = await page.js(
            "return document.querySelector('svg.track-map text.map-attribution').textContent"
        )
        assert shown == ATTRIBUTION
        await page.screenshot("console-detail-tiles.png")
        assert await page.js("return window.cspViolations") == []
        assert await page.console_errors() == []


async def test_tile_layout_caps_the_count_and_clamps_the_zoom_in_the_browser() -> None:
    """The pure tile layout: a large drawing zooms out until at most 36 tiles cover it, the
    configured maximum zoom holds, and without tiles the drawing is as before."""
    async with console_only() as base, browser(base) as page:
        await page.open("/console/")
        await page.wait_css("#token", "the page")
        result = await page.js_async("""
            const done = arguments[arguments.length - 1];
            import('/console/js/map.js').then((map) => {
              const { makeProjection, tileLayout, bestZoom, drawTrack } = map;
              const pts = [[59.8586, 17.6389], [59.8649, 17.6393]];
              const url = 'https://tiles.example/{z}/{x}/{y}.png';
              const out = {};
              const big = makeProjection(pts, { width: 3000, height: 3000, marginM: 30 });
              const tiles = tileLayout(big, { url, max_zoom: 19 }, 3000, 3000);
              const edge = (f, pick) => f(...tiles.map(pick));
              out.big = {
                best: bestZoom(big, 19), n: tiles.length, z: [...new Set(tiles.map((t) => t.z))],
                covers: [edge(Math.min, (t) => t.at[0]), edge(Math.min, (t) => t.at[1]),
                         edge(Math.max, (t) => t.at[0] + t.at[2]),
                         edge(Math.max, (t) => t.at[1] + t.at[3])],
              };
              const small = makeProjection(pts, { width: 640, height: 420, marginM: 30 });
              out.clamped = tileLayout(small, { url, max_zoom: 12 }, 640, 420).map((t) => t.href);
              const t = (k) => k;
              const track = pts.map(([lat, lon], i) => ({ lat, lon, accuracy_m: 10, ts: i }));
              const plain = drawTrack({ track, zones: [], alarmPosition: null, t });
              out.plain = [plain.querySelectorAll('image').length,
                           plain.querySelectorAll('.map-attribution').length];
              const withTiles = drawTrack({ track, zones: [], alarmPosition: null, t,
                                            tiles: { url, attribution: 'A', max_zoom: 19 } });
              out.tiled = [withTiles.querySelectorAll('image').length,
                           withTiles.querySelector('.map-attribution').textContent];
              done(out);
            });
        """)
        big = result["big"]
        assert big["best"] == 18 and big["z"] == [17] and big["n"] <= 36
        left, top, right, bottom = big["covers"]
        assert left <= 0 and top <= 0 and right >= 3000 and bottom >= 3000
        fx, fy = tile_xy(59.8617, 17.6391, 12)  # the view is well inside one zoom-12 tile
        assert result["clamped"] == [f"https://tiles.example/12/{int(fx)}/{int(fy)}.png"]
        assert result["plain"] == [0, 0]
        assert result["tiled"][0] > 0 and result["tiled"][1] == "A"
