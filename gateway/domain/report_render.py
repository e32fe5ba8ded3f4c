"""The follow-up report (``gateway.domain.followup``) as JSON-ready data, CSV and HTML with
server-drawn inline SVG charts (no script, so it prints to PDF as shown). Pure: strings
in, strings out. Labels in Swedish (``sv``) or English (``en``)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
from collections.abc import Sequence
from dataclasses import asdict
from html import escape
from typing import Any

from gateway.domain.followup import NIGHT_HOURS, Report, ResponseLine

LANGS = ("sv", "en")

_L: dict[str, dict[str, str]] = {
    "title": {"sv": "Uppföljningsrapport", "en": "Follow-up report"},
    "period": {"sv": "Period", "en": "Period"},
    "services": {"sv": "Tjänster: enheter och brukare", "en": "Services: devices and users"},
    "service": {"sv": "Tjänst", "en": "Service"},
    "devices": {"sv": "Enheter i bruk", "en": "Devices in use"},
    "devices_at_end": {"sv": "Vid periodens slut", "en": "At the period's end"},
    "users": {"sv": "Brukare", "en": "Users"},
    "by_type": {"sv": "Enheter per typ", "en": "Devices by type"},
    "unused": {
        "sv": "Oanvända enheter (ingen användning på 14 dagar)",
        "en": "Unused devices (no use for 14 days)",
    },
    "rarely_worn": {
        "sv": "GPS-larm burna färre än två dagar i veckan",
        "en": "GPS alarms worn on fewer than two days a week",
    },
    "of_judged": {"sv": "av bedömda", "en": "of those judged"},
    "response_kind": {"sv": "Svarstider per larmtyp", "en": "Response times by alarm kind"},
    "response_hour": {
        "sv": "Svarstider per timme på natten (22-07)",
        "en": "Response times by hour of the night (22-07)",
    },
    "target": {"sv": "Mål", "en": "Target"},
    "no_target": {"sv": "Inget mål satt", "en": "No target set"},
    "share_within": {"sv": "Andel kvitterade inom {s} s", "en": "Share acknowledged within {s} s"},
    "p50": {"sv": "Median till kvittens (s)", "en": "Median to acknowledge (s)"},
    "p90": {"sv": "90:e percentil (s)", "en": "90th percentile (s)"},
    "alarms": {"sv": "Larm", "en": "Alarms"},
    "kind": {"sv": "Typ", "en": "Kind"},
    "hour": {"sv": "Timme", "en": "Hour"},
    "escalations": {"sv": "Eskaleringar", "en": "Escalations"},
    "escalated": {"sv": "Eskalerade", "en": "Escalated"},
    "max_level": {"sv": "Högsta nivå", "en": "Highest level"},
    "conditions": {
        "sv": "Tysta enheter och låg batterinivå",
        "en": "Silent and low-battery devices",
    },
    "spells": {"sv": "Tillfällen", "en": "Spells"},
    "hours_total": {"sv": "Timmar totalt", "en": "Hours in all"},
    "hours_p50": {"sv": "Median (h)", "en": "Median (h)"},
    "hours_max": {"sv": "Längst (h)", "en": "Longest (h)"},
    "open_at_end": {"sv": "Kvar vid periodens slut", "en": "Still so at the end"},
    "visits": {"sv": "Planerade besök med nyckelfritt lås", "en": "Planned visits, keyless locks"},
    "planned": {"sv": "Planerade", "en": "Planned"},
    "opened": {"sv": "Öppnade", "en": "Opened"},
    "supervision": {
        "sv": "Digital nattillsyn: tillsyner",
        "en": "Digital night supervision: checks",
    },
    "not_in_use": {"sv": "Inte i bruk", "en": "Not in use"},
    "checks_ok": {"sv": "OK", "en": "OK"},
    "checks_not_ok": {"sv": "Inte OK", "en": "Not OK"},
    "checks_failed": {"sv": "Misslyckade (besök)", "en": "Failed (visit)"},
    "checks_retried": {"sv": "Med omförsök", "en": "Retried"},
    "checks": {"sv": "Tillsyner", "en": "Checks"},
    "counts_only": {
        "sv": "Endast antal; inga personuppgifter.",
        "en": "Counts only; no personal data.",
    },
    "safety_alarm": {"sv": "Trygghetslarm", "en": "Safety alarm"},
    "gps_alarm": {"sv": "GPS-larm", "en": "GPS alarm"},
    "night_supervision": {"sv": "Digital nattillsyn", "en": "Digital night supervision"},
    "keyless_locks": {"sv": "Nyckelfria lås", "en": "Keyless locks"},
    "remote_self_monitoring": {
        "sv": "Egenmonitorering (ej nationell kategori)",
        "en": "Remote self-monitoring (not a national category)",
    },
    "door_lock": {"sv": "Dörrlås", "en": "Door lock"},
    "scale": {"sv": "Våg", "en": "Scale"},
    "blood_pressure_monitor": {"sv": "Blodtrycksmätare", "en": "Blood-pressure monitor"},
    "device_silent": {"sv": "Tyst enhet", "en": "Silent device"},
    "door_sensor": {"sv": "Dörrsensor", "en": "Door sensor"},
    "motion_sensor": {"sv": "Rörelsesensor", "en": "Motion sensor"},
    "bed_sensor": {"sv": "Sängsensor", "en": "Bed sensor"},
    "floor_mat": {"sv": "Golvmatta", "en": "Floor mat"},
    "supervision_not_ok": {"sv": "Tillsyn inte OK", "en": "Check not OK"},
    "supervision_failed": {"sv": "Tillsyn misslyckad", "en": "Check failed"},
    "door_opened_at_night": {"sv": "Dörr öppnad på natten", "en": "Door opened at night"},
    "out_of_bed": {"sv": "Uppe ur sängen", "en": "Out of bed"},
    "no_movement": {"sv": "Ingen rörelse", "en": "No movement"},
    "button": {"sv": "Larmknapp", "en": "Button"},
    "fall": {"sv": "Fall", "en": "Fall"},
    "geofence_exit": {"sv": "Lämnat område", "en": "Left the zone"},
    "tamper": {"sv": "Manipulering", "en": "Tamper"},
    "door_unlocked": {"sv": "Dörr olåst", "en": "Door unlocked"},
    "unauthorised_unlock": {"sv": "Obehörig upplåsning", "en": "Unauthorised unlock"},
    "blood_pressure": {"sv": "Blodtryck", "en": "Blood pressure"},
    "weight_gain": {"sv": "Viktökning", "en": "Weight gain"},
    "note.safety_alarm": {
        "sv": "registret har ingen enhetstyp för ett stationärt trygghetslarm",
        "en": "no device type of the registry is a stationary safety alarm",
    },
    "note.no_target": {
        "sv": "Inget svarsmål satt: svarstiderna visas utan mållinje.",
        "en": "No answering target set: the response times are shown without a target line.",
    },
    "note.short_period": {
        "sv": "Perioden är kortare än 14 dagar: ingen enhet bedöms som oanvänd.",
        "en": "The period is shorter than 14 days: no device is judged unused.",
    },
    "battery_low": {"sv": "Låg batterinivå", "en": "Battery low"},
}


def label(key: str, lang: str) -> str:
    entry = _L.get(key)
    return entry.get(lang, entry["en"]) if entry else key


# --- data (JSON) and CSV ---------------------------------------------------------------


def as_data(report: Report) -> dict[str, Any]:
    """The report as plain data (the JSON answer)."""
    return {
        "tenant_id": report.tenant_id,
        "from": report.period.start.isoformat(),
        "to": report.period.end.isoformat(),
        "target": asdict(report.target) if report.target else None,
        "devices_by_type": report.devices_by_type,
        "services": [{**asdict(s), "service": s.service.value} for s in report.services],
        "unused_devices": report.unused_devices,
        "gps_rarely_worn": report.gps_rarely_worn,
        "gps_judged": report.gps_judged,
        "response_by_kind": [asdict(r) for r in report.response_by_kind],
        "response_by_hour": [asdict(r) for r in report.response_by_hour],
        "escalations": [asdict(e) for e in report.escalations],
        "conditions": [asdict(c) for c in report.conditions],
        "visits": asdict(report.visits),
        "supervision": asdict(report.supervision),
        "notes": report.notes,
    }


CSV_HEADER = ("section", "key", "figure", "value")


def as_csv(report: Report) -> str:
    """One figure a row: section, key, figure, value (long format, any spreadsheet)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    w.writerow(("period", "", "from", report.period.start.isoformat()))
    w.writerow(("period", "", "to", report.period.end.isoformat()))
    if report.target:
        w.writerow(("target", "", "ack_within_s", report.target.ack_within_s))
        w.writerow(("target", "", "ack_share", report.target.ack_share))
    for device_type, n in report.devices_by_type.items():
        w.writerow(("devices_by_type", device_type, "devices", n))
    for s in report.services:
        for fig in ("devices", "devices_at_end", "users"):
            w.writerow(("services", s.service.value, fig, getattr(s, fig)))
        w.writerow(("services", s.service.value, "in_use", str(s.in_use).lower()))
    for device_type, n in report.unused_devices.items():
        w.writerow(("unused_devices", device_type, "devices", n))
    w.writerow(("gps_worn", "gps_alarm", "rarely_worn", report.gps_rarely_worn))
    w.writerow(("gps_worn", "gps_alarm", "judged", report.gps_judged))
    for section, lines in (
        ("response_by_kind", report.response_by_kind),
        ("response_by_hour", report.response_by_hour),
    ):
        for r in lines:
            for fig in ("alarms", "ack_p50_s", "ack_p90_s", "share_within_target"):
                w.writerow((section, r.key, fig, _csv(getattr(r, fig))))
    for e in report.escalations:
        for fig in ("alarms", "escalated", "max_level"):
            w.writerow(("escalations", e.kind, fig, getattr(e, fig)))
    for c in report.conditions:
        for fig in ("spells", "devices", "hours_total", "hours_p50", "hours_max", "open_at_end"):
            w.writerow(("conditions", c.kind, fig, _csv(getattr(c, fig))))
    w.writerow(("visits", "keyless_locks", "planned", report.visits.planned))
    w.writerow(("visits", "keyless_locks", "opened", report.visits.opened))
    sup = report.supervision
    w.writerow(("supervision", "night_supervision", "in_use", str(sup.in_use).lower()))
    for fig in ("users", "checks_ok", "checks_not_ok", "checks_failed", "checks_retried"):
        w.writerow(("supervision", "night_supervision", fig, getattr(sup, fig)))
    return out.getvalue()


def _csv(value: object) -> object:
    return "" if value is None else value


# --- SVG charts ------------------------------------------------------------------------


def bar_chart(
    name: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    top: float | None = None,
    target: float | None = None,
    target_label: str = "",
    percent: bool = False,
    shade: Sequence[bool] | None = None,
) -> str:
    """Vertical grouped bars, one group a label, one bar a series; an optional horizontal
    target line. ``data-*`` attributes name each mark (the e2e test reads them)."""
    width, height = 640, 240
    left, right, top_pad, bottom = 48, 84, 16, 56
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    values = [v for _, vs in series for v in vs if v is not None]
    peak = top if top is not None else max([*values, target or 0, 1])
    peak = peak or 1
    n_groups, n_series = max(len(labels), 1), max(len(series), 1)
    group_w = plot_w / n_groups
    bar_w = max(group_w * 0.8 / n_series, 1)

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - min(v, peak) / peak)

    def fmt(v: float) -> str:
        return f"{v * 100:.0f} %" if percent else f"{v:g}"

    parts = [
        f'<svg class="chart" data-chart="{escape(name)}" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" xmlns="http://www.w3.org/2000/svg">'
    ]
    for i, shaded in enumerate(shade or []):
        if shaded:
            parts.append(
                f'<rect class="shade" x="{left + i * group_w:.1f}" y="{top_pad}"'
                f' width="{group_w:.1f}" height="{plot_h}" fill="#eef2f8"/>'
            )
    for frac in (0, 0.5, 1):
        gy = y(peak * frac)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{gy:.1f}"'
            f' y2="{gy:.1f}" stroke="#ccc" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{gy + 4:.1f}" text-anchor="end"'
            f' font-size="10">{escape(fmt(peak * frac))}</text>'
        )
    colours = ("#2b6cb0", "#9c4221", "#2f855a")
    for s, (series_name, vs) in enumerate(series):
        for i, v in enumerate(vs):
            if v is None:
                continue
            x = left + i * group_w + group_w * 0.1 + s * bar_w
            parts.append(
                f'<rect class="bar" data-series="{escape(series_name)}"'
                f' data-label="{escape(labels[i])}" data-value="{v:g}" x="{x:.1f}"'
                f' y="{y(v):.1f}" width="{bar_w:.1f}" height="{top_pad + plot_h - y(v):.1f}"'
                f' fill="{colours[s % len(colours)]}"><title>{escape(labels[i])}:'
                f" {escape(fmt(v))}</title></rect>"
            )
    for i, text in enumerate(labels):
        cx = left + (i + 0.5) * group_w
        parts.append(
            f'<text x="{cx:.1f}" y="{height - bottom + 14}" text-anchor="middle"'
            f' font-size="10">{escape(text)}</text>'
        )
    if target is not None:
        ty = y(target)
        parts.append(
            f'<line class="target-line" data-value="{target:g}" x1="{left}"'
            f' x2="{width - right}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#c53030"'
            f' stroke-width="2" stroke-dasharray="6 3"/>'
            f'<text x="{width - right + 4}" y="{ty + 4:.1f}" text-anchor="start" font-size="11"'
            f' fill="#c53030">{escape(target_label)} {escape(fmt(target))}</text>'
        )
    if len(series) > 1:
        for s, (series_name, _) in enumerate(series):
            lx = left + s * 160
            parts.append(
                f'<rect x="{lx}" y="{height - 18}" width="10" height="10"'
                f' fill="{colours[s % len(colours)]}"/><text x="{lx + 14}"'
                f' y="{height - 9}" font-size="11">{escape(series_name)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _response_chart(
    name: str,
    lines: Sequence[ResponseLine],
    labels: Sequence[str],
    report: Report,
    lang: str,
    shade: Sequence[bool] | None = None,
) -> str:
    target = report.target
    if target is not None:
        series = [
            (
                label("share_within", lang).format(s=target.ack_within_s),
                [r.share_within_target for r in lines],
            )
        ]
        return bar_chart(
            name,
            labels,
            series,
            top=1.0,
            target=target.ack_share,
            target_label=label("target", lang),
            percent=True,
            shade=shade,
        )
    series = [
        (label("p50", lang), [r.ack_p50_s for r in lines]),
        (label("p90", lang), [r.ack_p90_s for r in lines]),
    ]
    return bar_chart(name, labels, series, shade=shade)


# --- HTML ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#1a202c;max-width:980px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:16px;margin:28px 0 8px;break-after:avoid}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
th,td{border:1px solid #cbd5e0;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
.note{color:#4a5568;font-size:13px} .muted{color:#718096}
section{break-inside:avoid} svg.chart{max-width:100%;height:auto}
@media print{body{margin:0} a{color:inherit}}
"""


def page_csp() -> str:
    """The HTML page's own Content-Security-Policy: nothing loads, no script runs, only
    its one style block (by hash) applies, so the page shows as printed when opened alone
    under the API's strict policy, and nothing in it can reach out."""
    digest = base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()
    return (
        f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    th = "".join(f"<th>{escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def as_html(report: Report, lang: str = "sv") -> str:
    """The whole report as one self-contained HTML page (inline SVG, no script)."""

    def L(key: str) -> str:
        return label(key, lang)

    p = report.period
    out = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>{escape(L('title'))} {escape(report.tenant_id)} {p.start}</title>"
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{escape(L('title'))}: {escape(report.tenant_id)}</h1>",
        f'<p class="note">{escape(L("period"))} {p.start} - {p.end} (Europe/Stockholm,'
        f" {'slutdatum ej medräknat' if lang == 'sv' else 'end date excluded'})."
        f" {escape(L('counts_only'))}</p>",
    ]
    for note in report.notes:
        out.append(f'<p class="note">{escape(L("note." + note))}</p>')

    # services
    services = [s for s in report.services]
    out.append(f"<section><h2>{escape(L('services'))}</h2>")
    out.append(
        bar_chart(
            "services",
            [L(s.service.value).split(" (")[0] for s in services],
            [
                (L("devices"), [s.devices for s in services]),
                (L("users"), [s.users for s in services]),
            ],
        )
    )
    out.append(
        _table(
            [L("service"), L("devices"), L("devices_at_end"), L("users"), ""],
            [
                (
                    L(s.service.value),
                    s.devices,
                    s.devices_at_end,
                    s.users,
                    "" if s.in_use else f"{L('not_in_use')}: {L('note.' + s.service.value)}",
                )
                for s in services
            ],
        )
    )
    out.append(
        _table([L("by_type"), L("devices")], [(L(t), n) for t, n in report.devices_by_type.items()])
    )
    out.append("</section>")

    # unused
    out.append(f"<section><h2>{escape(L('unused'))}</h2>")
    types = list(report.unused_devices)
    out.append(
        bar_chart(
            "unused",
            [L(t) for t in types],
            [(L("devices"), [report.unused_devices[t] for t in types])],
        )
    )
    out.append(
        f"<p>{escape(L('rarely_worn'))}: <b>{report.gps_rarely_worn}</b>"
        f" {escape(L('of_judged'))} {report.gps_judged}</p></section>"
    )

    # response times
    target_text = (
        f"{L('target')}: {report.target.ack_share * 100:g} % ≤ {report.target.ack_within_s} s"
        if report.target
        else L("no_target")
    )
    for key, name, lines, labels, shade in (
        (
            "response_kind",
            "response-by-kind",
            report.response_by_kind,
            [L(r.key) for r in report.response_by_kind],
            None,
        ),
        (
            "response_hour",
            "response-by-hour",
            [report.response_by_hour[h] for h in NIGHT_HOURS],
            [f"{h:02d}" for h in NIGHT_HOURS],
            None,
        ),
    ):
        out.append(f"<section><h2>{escape(L(key))}</h2><p class='note'>{escape(target_text)}</p>")
        out.append(_response_chart(name, lines, labels, report, lang, shade))
        out.append(
            _table(
                [
                    L("kind") if key == "response_kind" else L("hour"),
                    L("alarms"),
                    L("p50"),
                    L("p90"),
                    L("share_within").format(s=report.target.ack_within_s) if report.target else "",
                ],
                [
                    (
                        L(r.key),
                        r.alarms,
                        r.ack_p50_s,
                        r.ack_p90_s,
                        _pct(r.share_within_target) if report.target else "",
                    )
                    for r in lines
                ],
            )
        )
        out.append("</section>")

    # escalations
    out.append(f"<section><h2>{escape(L('escalations'))}</h2>")
    esc = report.escalations
    out.append(
        bar_chart(
            "escalations",
            [L(e.kind) for e in esc],
            [(L("alarms"), [e.alarms for e in esc]), (L("escalated"), [e.escalated for e in esc])],
        )
    )
    out.append(
        _table(
            [L("kind"), L("alarms"), L("escalated"), L("max_level")],
            [(L(e.kind), e.alarms, e.escalated, e.max_level) for e in esc],
        )
    )
    out.append("</section>")

    # conditions
    out.append(f"<section><h2>{escape(L('conditions'))}</h2>")
    cs = report.conditions
    out.append(
        bar_chart(
            "conditions",
            [L(c.kind) for c in cs],
            [(L("devices"), [c.devices for c in cs]), (L("spells"), [c.spells for c in cs])],
        )
    )
    out.append(
        _table(
            [
                L("kind"),
                L("devices"),
                L("spells"),
                L("hours_total"),
                L("hours_p50"),
                L("hours_max"),
                L("open_at_end"),
            ],
            [
                (
                    L(c.kind),
                    c.devices,
                    c.spells,
                    c.hours_total,
                    c.hours_p50,
                    c.hours_max,
                    c.open_at_end,
                )
                for c in cs
            ],
        )
    )
    out.append("</section>")

    # visits
    v = report.visits
    out.append(f"<section><h2>{escape(L('visits'))}</h2>")
    out.append(
        bar_chart("visits", [L("planned"), L("opened")], [(L("visits"), [v.planned, v.opened])])
    )
    share = f" ({v.opened / v.planned * 100:.1f} %)" if v.planned else ""
    out.append(
        f"<p>{escape(L('opened'))}: <b>{v.opened}</b> / {escape(L('planned'))}:"
        f" <b>{v.planned}</b>{share}</p></section>"
    )

    # supervision
    sup = report.supervision
    out.append(f"<section><h2>{escape(L('supervision'))}</h2>")
    if sup.in_use:
        out.append(
            bar_chart(
                "supervision",
                [L("checks_ok"), L("checks_not_ok"), L("checks_failed"), L("checks_retried")],
                [(L("checks"), [sup.checks_ok, sup.checks_not_ok, sup.checks_failed,
                                sup.checks_retried])],
            )
        )  # fmt: skip
        out.append(
            _table(
                [L("users"), L("checks_ok"), L("checks_not_ok"), L("checks_failed"),
                 L("checks_retried")],
                [(sup.users, sup.checks_ok, sup.checks_not_ok, sup.checks_failed,
                  sup.checks_retried)],
            )
        )  # fmt: skip
    else:
        out.append(f'<p class="muted">{escape(L("not_in_use"))}: {escape(sup.note)}</p>')
    out.append("</section></body></html>")
    return "".join(out)
