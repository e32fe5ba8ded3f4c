// The track of positions drawn against the safe zones as SVG, with a local projection
// (equirectangular around the centre of what is drawn: exact enough over a few km).
// No external map service is needed; optional XYZ map tiles (the console.map_tile_url
// setting) are drawn underneath when configured.

import { formatTime } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const M_PER_DEG_LAT = 110574;
const M_PER_DEG_LON_EQUATOR = 111320;

/** A projection fitting every given [lat, lon] (with a margin in metres) in width x height. */
export function makeProjection(points, { width, height, pad = 24, marginM = 0, minSpanM = 200 }) {
  const lats = points.map((p) => p[0]);
  const lons = points.map((p) => p[1]);
  const lat0 = (Math.min(...lats) + Math.max(...lats)) / 2;
  const lon0 = (Math.min(...lons) + Math.max(...lons)) / 2;
  const kx = M_PER_DEG_LON_EQUATOR * Math.cos((lat0 * Math.PI) / 180);
  const toM = ([lat, lon]) => [(lon - lon0) * kx, (lat - lat0) * M_PER_DEG_LAT];
  let spanX = minSpanM;
  let spanY = minSpanM;
  for (const p of points) {
    const [x, y] = toM(p);
    spanX = Math.max(spanX, 2 * (Math.abs(x) + marginM));
    spanY = Math.max(spanY, 2 * (Math.abs(y) + marginM));
  }
  const scale = Math.min((width - 2 * pad) / spanX, (height - 2 * pad) / spanY); // px per m
  return {
    scale,
    lat0,
    lon0,
    xy(lat, lon) {
      const [x, y] = toM([lat, lon]);
      return [width / 2 + x * scale, height / 2 - y * scale];
    },
    /** The inverse of ``xy``: [lat, lon] at view coordinates x, y. */
    latlon(x, y) {
      return [lat0 + (height / 2 - y) / scale / M_PER_DEG_LAT, lon0 + (x - width / 2) / scale / kx];
    },
  };
}

// --- optional map tiles ------------------------------------------------------------------
// Standard XYZ tiles: Web Mercator, 256 px, x eastwards from 180° W, y southwards from
// 85.0511° N. Each tile is placed by projecting its corner lat/lon through the local
// projection above, so tiles line up with the track and zones at every tile corner; in
// between, the image is stretched linearly. That is an approximation: Mercator's scale
// drifts with latitude by about tan(lat)·Δlat (0.03 % per km at 60° N), so over the few km
// a track spans the local projection and Web Mercator agree to well under a pixel.

const MERCATOR_M_PER_PX_Z0 = 156543.03392; // 2πR / 256: metres per tile pixel, equator, zoom 0
const MERCATOR_MAX_LAT = 85.0511;
export const MAX_TILES = 36;

const clampLat = (lat) => Math.max(-MERCATOR_MAX_LAT, Math.min(MERCATOR_MAX_LAT, lat));
export const lon2tile = (lon, z) => ((lon + 180) / 360) * 2 ** z;
export function lat2tile(lat, z) {
  const r = (clampLat(lat) * Math.PI) / 180;
  return ((1 - Math.log(Math.tan(r) + 1 / Math.cos(r)) / Math.PI) / 2) * 2 ** z;
}
export const tile2lon = (x, z) => (x / 2 ** z) * 360 - 180;
export function tile2lat(y, z) {
  return (180 / Math.PI) * Math.atan(Math.sinh(Math.PI - (2 * Math.PI * y) / 2 ** z));
}

/** The zoom whose metres per tile pixel best match the projection's (in ratio), clamped. */
export function bestZoom(proj, maxZoom = 19) {
  const mPerTilePx = MERCATOR_M_PER_PX_Z0 * Math.cos((proj.lat0 * Math.PI) / 180);
  // At zoom z a tile pixel is mPerTilePx / 2^z metres; a view pixel is 1 / scale metres.
  const z = Math.round(Math.log2(mPerTilePx * proj.scale));
  return Math.max(0, Math.min(maxZoom, z));
}

/**
 * The tiles covering the whole width x height view: [{z, x, y, href, at: [x, y, w, h]}].
 * ``tiles``: {url: "…{z}/{x}/{y}…", max_zoom}. At the best zoom if that needs at most
 * MAX_TILES tiles, else the next zoom out that does (each step out quarters the count).
 */
export function tileLayout(proj, tiles, width, height) {
  const [latN, lonW] = proj.latlon(0, 0);
  const [latS, lonE] = proj.latlon(width, height);
  for (let z = bestZoom(proj, tiles.max_zoom ?? 19); z >= 0; z--) {
    const n = 2 ** z;
    const x0 = Math.floor(lon2tile(lonW, z));
    const x1 = Math.floor(lon2tile(lonE, z));
    const y0 = Math.max(0, Math.floor(lat2tile(latN, z)));
    const y1 = Math.min(n - 1, Math.floor(lat2tile(latS, z)));
    if ((x1 - x0 + 1) * (y1 - y0 + 1) > MAX_TILES) continue;
    const out = [];
    for (let ty = y0; ty <= y1; ty++) {
      for (let tx = x0; tx <= x1; tx++) {
        const [left, top] = proj.xy(tile2lat(ty, z), tile2lon(tx, z));
        const [right, bottom] = proj.xy(tile2lat(ty + 1, z), tile2lon(tx + 1, z));
        const wrapped = ((tx % n) + n) % n; // across the antimeridian
        const href = tiles.url.replaceAll("{z}", z).replaceAll("{x}", wrapped).replaceAll("{y}", ty);
        out.push({ z, x: wrapped, y: ty, href, at: [left, top, right - left, bottom - top] });
      }
    }
    return out;
  }
  return [];
}

function tileLayer(proj, tiles, width, height) {
  const layer = el("g", { class: "map-tiles" });
  for (const tile of tileLayout(proj, tiles, width, height)) {
    const [x, y, w, h] = tile.at.map((v) => v.toFixed(2));
    layer.append(el("image", {
      href: tile.href,
      x,
      y,
      // Half a pixel of overlap hides the hairline seams between neighbouring tiles.
      width: (Number(w) + 0.5).toFixed(2),
      height: (Number(h) + 0.5).toFixed(2),
      preserveAspectRatio: "none",
      class: "tile",
      "data-z": tile.z,
      "data-x": tile.x,
      "data-y": tile.y,
    }));
  }
  return layer;
}

/** A round length for the scale bar, at most ``maxM`` metres. */
export function niceLength(maxM) {
  const steps = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
  let best = steps[0];
  for (const s of steps) if (s <= maxM) best = s;
  return best;
}

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function zonePoints(zone) {
  const s = zone.shape;
  if (s.type === "circle") {
    const dLat = s.radius_m / M_PER_DEG_LAT;
    const dLon = s.radius_m / (M_PER_DEG_LON_EQUATOR * Math.cos((s.lat * Math.PI) / 180));
    return [[s.lat + dLat, s.lon + dLon], [s.lat - dLat, s.lon - dLon]];
  }
  return s.points;
}

/**
 * Draw into a new <svg>. track: [{lat, lon, accuracy_m, ts}] oldest first; zones: the
 * person's safe zones; alarmPosition: {lat, lon} or null; t: the translation function;
 * tiles: {url, attribution, max_zoom} to draw map tiles underneath, or null for none.
 */
export function drawTrack({ track, zones, alarmPosition, t, tiles = null, width = 640, height = 420 }) {
  const what = t("map.label", {
    positions: t("count.positions", { n: track.length }),
    zones: t("count.safe_zones", { n: zones.length }),
  });
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "track-map",
    role: "img",
    "aria-label": what,
  });
  svg.append(el("title", {}, what));
  svg.append(el("rect", { x: 0, y: 0, width, height, class: "map-bg" }));
  const points = [
    ...track.map((p) => [p.lat, p.lon]),
    ...zones.flatMap(zonePoints),
    ...(alarmPosition ? [[alarmPosition.lat, alarmPosition.lon]] : []),
  ];
  if (points.length === 0) {
    svg.append(el("text", { x: width / 2, y: height / 2, class: "map-empty" }, t("map.empty")));
    return svg;
  }
  const proj = makeProjection(points, { width, height, marginM: 30 });
  if (tiles && tiles.url) svg.append(tileLayer(proj, tiles, width, height));

  const zoneLayer = el("g", { class: "zones" });
  for (const zone of zones) {
    const s = zone.shape;
    let shape;
    let labelAt;
    if (s.type === "circle") {
      const [cx, cy] = proj.xy(s.lat, s.lon);
      shape = el("circle", { cx, cy, r: Math.max(2, s.radius_m * proj.scale), class: "zone" });
      labelAt = [cx, cy];
    } else {
      const pts = s.points.map(([lat, lon]) => proj.xy(lat, lon));
      shape = el("polygon", { points: pts.map((p) => p.join(",")).join(" "), class: "zone" });
      labelAt = pts[0];
    }
    shape.setAttribute("data-zone", zone.name);
    zoneLayer.append(shape, el("text", { x: labelAt[0], y: labelAt[1], class: "zone-label" }, zone.name));
  }
  svg.append(zoneLayer);

  if (track.length > 0) {
    const xy = track.map((p) => proj.xy(p.lat, p.lon));
    svg.append(el("polyline", {
      points: xy.map((p) => p.map((v) => v.toFixed(1)).join(",")).join(" "),
      class: "track",
      "data-points": track.length,
    }));
    const fixes = el("g", { class: "fixes" });
    xy.forEach(([x, y], i) => {
      const last = i === xy.length - 1;
      const dot = el("circle", { cx: x, cy: y, r: last ? 8 : 4, class: last ? "fix fix-last" : "fix" });
      // The fix's time in the tenant's time zone, in the console's one format.
      dot.append(el("title", {}, formatTime(track[i].ts)));
      fixes.append(dot);
    });
    const last = track[track.length - 1];
    if (last.accuracy_m) {
      const [x, y] = xy[xy.length - 1];
      fixes.prepend(el("circle", { cx: x, cy: y, r: last.accuracy_m * proj.scale, class: "accuracy" }));
    }
    svg.append(fixes);
  }
  if (alarmPosition) {
    const [x, y] = proj.xy(alarmPosition.lat, alarmPosition.lon);
    const size = 10;
    svg.append(el("path", {
      d: `M${x - size},${y - size}L${x + size},${y + size}M${x - size},${y + size}L${x + size},${y - size}`,
      class: "alarm-pos",
    }));
  }

  // Scale bar and north.
  const barM = niceLength((width / 4) / proj.scale);
  const barPx = barM * proj.scale;
  const y = height - 16;
  svg.append(el("line", { x1: 16, y1: y, x2: 16 + barPx, y2: y, class: "scale-bar" }));
  svg.append(el("text", { x: 16, y: y - 8, class: "scale-label" },
    barM >= 1000 ? `${barM / 1000} km` : `${barM} m`));
  svg.append(el("text", { x: width - 24, y: 28, class: "north" }, "N ↑"));
  if (tiles && tiles.url && tiles.attribution) {
    svg.append(el("text", { x: width - 6, y: height - 6, class: "map-attribution" }, tiles.attribution));
  }
  return svg;
}
