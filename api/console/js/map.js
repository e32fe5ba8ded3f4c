// The track of positions drawn against the safe zones as SVG, with a local projection
// (equirectangular around the centre of what is drawn: exact enough over a few km).
// No external map service.

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
    xy(lat, lon) {
      const [x, y] = toM([lat, lon]);
      return [width / 2 + x * scale, height / 2 - y * scale];
    },
  };
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
 * person's safe zones; alarmPosition: {lat, lon} or null; t: the translation function.
 */
export function drawTrack({ track, zones, alarmPosition, t, width = 640, height = 420 }) {
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "track-map",
    role: "img",
    "aria-label": t("map.label", { n: track.length, z: zones.length }),
  });
  svg.append(el("title", {}, t("map.label", { n: track.length, z: zones.length })));
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
      dot.append(el("title", {}, new Date(track[i].ts).toLocaleString()));
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
  return svg;
}
