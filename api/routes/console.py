"""The night-supervision console: its static page (``/console``) and the read-only endpoints
only it needs (``/api/v1/console/...``): the open alarms with their version and recipients,
an alarm's detail (person, device, safe zones, recent track) and the fleet's health.

The page is plain HTML, CSS and ES modules from the package directory ``api/console``; no
inline script or style, so a strict Content-Security-Policy (``default-src 'self'``) holds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, RedirectResponse

from api import consented
from api.auth import Principal, Role
from api.deps import CurrentPrincipal, TenantConn, require
from api.routes.log_review import AUDITORS as LOG_REVIEWERS
from api.routes.quarantine import REVIEWERS
from api.routes.reports import READERS as REPORT_READERS
from gateway.adapters.postgres import console_queries as q
from gateway.config.settings import AlarmSettings, ConsoleSettings
from gateway.control import protocol as p
from gateway.control.worker_link import NoWorker, WorkerLink
from gateway.domain.alarms import Severity

router = APIRouter(tags=["console"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "console"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
STAFF = (Role.OPERATOR, Role.TENANT_ADMIN, Role.PLATFORM_ADMIN)
FLEET_READERS = (*STAFF, Role.INSTALLER)


# --- the page ---------------------------------------------------------------------------------
@router.get("/console", include_in_schema=False)
async def console_root() -> RedirectResponse:
    return RedirectResponse("/console/", status_code=308)


@router.get("/console/{name:path}", include_in_schema=False)
async def console_file(name: str) -> FileResponse:
    """A file of the console; the empty name (and any unknown view path) is the page."""
    path = (STATIC_DIR / (name or "index.html")).resolve()
    if not path.is_relative_to(STATIC_DIR) or path.suffix not in MEDIA_TYPES:
        raise HTTPException(404, "not found")
    if not path.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(
        path,
        media_type=MEDIA_TYPES[path.suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


# --- the console's reads ------------------------------------------------------------------------
@router.get("/api/v1/console/me")
async def me(request: Request, who: CurrentPrincipal) -> dict[str, Any]:
    """Who the token says the caller is (the page shows it and checks the role), and the
    console's configuration: ``map_tiles`` (tile URL template, attribution, maximum zoom)
    or null when no map tiles are configured. ``may_review_quarantine``: the fleet view
    shows the devices whose messages were refused; ``may_view_fleet`` without
    ``may_handle_alarms`` (a technician): the console opens the fleet view only (#19.7).
    ``may_read_report``: the follow-up report view (#21.1); an auditor has that view only.
    ``may_review_log``: the log review view (#21.2-3, docs/log-review.md)."""
    return {
        "subject": who.subject,
        "tenant": who.tenant,
        "role": who.role.value,
        "may_handle_alarms": who.role in STAFF,
        "may_review_quarantine": who.role in REVIEWERS,
        "may_view_fleet": who.role in FLEET_READERS,
        "may_read_report": who.role in REPORT_READERS,
        "may_review_log": who.role in LOG_REVIEWERS,
        "map_tiles": _map_tiles(request),
    }


def _map_tiles(request: Request) -> dict[str, Any] | None:
    config: ConsoleSettings = getattr(request.app.state, "console", None) or ConsoleSettings()
    if config.map_tile_url is None:
        return None
    return {
        "url": config.map_tile_url,
        "attribution": config.map_attribution,
        "max_zoom": config.map_max_zoom,
    }


def _workers(request: Request) -> WorkerLink | None:
    link: WorkerLink | None = request.app.state.workers
    return link


def _board_order(alarm: dict[str, Any]) -> tuple[int, float]:
    """Most severe first, then newest first."""
    raised = datetime.fromisoformat(alarm["raised_at"]).timestamp()
    return Severity(alarm["severity"]).rank, -raised


def _row_to_alarm(row: dict[str, Any]) -> dict[str, Any]:
    lat, lon, acc = row.pop("lat"), row.pop("lon"), row.pop("accuracy_m")
    row["position"] = {"lat": lat, "lon": lon, "accuracy_m": acc} if lat is not None else None
    row["condition"] = {None: None, True: "active", False: "cleared"}[row["condition"]]
    row["recipients"] = None
    return row


async def _rows(conn: Any, query: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(query, params)
    names = [c.name for c in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


@router.get("/api/v1/console/alarms")
async def open_alarms(
    request: Request,
    conn: TenantConn,
    limit: int = Query(default=500, ge=1, le=2000),
    who: Principal = require(*STAFF),
) -> dict[str, Any]:
    """A snapshot of the open alarms (raised or acknowledged) with ``version`` (to merge
    with the stream) and the recipient groups at the current escalation level, and the
    ``cursor``: the id of the tenant's last stream event included in the snapshot, to send
    as ``Last-Event-ID`` so the stream continues exactly where the snapshot ends.

    Served from the workers' alarm books (fresher than the database, which is written
    from their journals); from the database, cursor null, when no worker answers."""
    link = _workers(request)
    if link is not None:
        # The cursor is taken before asking: every event after it reaches the stream, and
        # one already reflected in the snapshot carries a version the page has seen.
        cursor = link.hub.latest()
        try:
            replies = await link.call(p.OPEN_ALARMS, who.tenant, gather=True)
        except NoWorker:
            replies = []
        if replies:
            alarms = [a for r in replies if r.status == 200 for a in r.body or ()]
            alarms.sort(key=_board_order)
            return {"alarms": alarms[:limit], "cursor": cursor}
    rows = await _rows(conn, q.OPEN_ALARMS, {"limit": limit})
    return {"alarms": [_row_to_alarm(r) for r in rows], "cursor": None}


@router.get("/api/v1/console/alarms/{alarm_id}")
async def alarm_detail(
    alarm_id: UUID,
    request: Request,
    conn: TenantConn,
    hours: float = Query(default=6, gt=0, le=72, description="How far back the track goes."),
    who: Principal = require(*STAFF),
) -> dict[str, Any]:
    """One alarm with what the operator needs to act: the person's pseudonymous reference
    and care notes, the device's battery and last-seen, the person's safe zones and the
    recent track of positions. The read of personal data is written to the access log."""
    alarm: dict[str, Any] | None = None
    link = _workers(request)
    if link is not None:
        try:
            held = await link.ask(p.ALARM, who.tenant, {"alarm_id": str(alarm_id)})
        except NoWorker:
            held = None
        if held is not None and held.status == 200:
            alarm = held.body
    if alarm is None:
        rows = await _rows(conn, q.ALARM, {"alarm_id": alarm_id})
        if not rows:
            raise HTTPException(404, "alarm not found")
        alarm = _row_to_alarm(rows[0])

    person = None
    zones: list[dict[str, Any]] = []
    track: list[dict[str, Any]] = []
    person_id = alarm["person_id"]
    if person_id is not None:
        people = await _rows(conn, q.PERSON, {"person_id": person_id})
        person = people[0] if people else None
    if person is not None:
        zones = await _rows(conn, q.SAFE_ZONES, {"person_id": person_id})
        since = datetime.now(UTC) - timedelta(hours=hours)
        track = await _rows(conn, q.TRACK, {"person_id": person_id, "since": since, "limit": 500})
        await consented.log_read(request, who, consented.ReadRecord(
            owner=who.tenant, person_id=person["id"], categories=["care_notes", "position"],
            purpose="alarm handling", outcome="allowed", reason="by role",
        ))  # fmt: skip
    devices = await _rows(conn, q.DEVICE, {"device_id": alarm["device_id"]})
    return {
        "alarm": alarm,
        "person": person,
        "device": devices[0] if devices else None,
        "safe_zones": zones,
        "track": track,
        "track_hours": hours,
    }


@router.get("/api/v1/console/fleet-health")
async def fleet_health(
    request: Request, conn: TenantConn, _: Principal = require(*FLEET_READERS)
) -> dict[str, Any]:
    """Devices in service that are silent, low on battery, or never seen since they were
    registered, judged with the alarm engine's own thresholds."""
    rules: AlarmSettings = request.app.state.alarm_settings
    params = {
        "factor": rules.silence_factor,
        "grace_s": rules.silence_grace_s,
        "battery_low": rules.battery_low_percent,
    }
    rows = await _rows(conn, q.FLEET, params)
    return {
        "checked_at": datetime.now(UTC),
        "devices_in_service": len(rows),
        "thresholds": {
            "silence_factor": rules.silence_factor,
            "silence_grace_s": rules.silence_grace_s,
            "battery_low_percent": rules.battery_low_percent,
        },
        "silent": [r for r in rows if r["silent"]],
        "low_battery": [r for r in rows if r["low_battery"]],
        "never_seen": [r for r in rows if r["never_seen"]],
    }
