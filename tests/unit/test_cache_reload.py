"""A cache's full reload keeps the objects it already holds where nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from gateway.domain.registry import Assignment, DeviceRecord, DeviceStatus
from gateway.storage import queries
from gateway.storage.listen import merged


def _record(device_id: str, tenant: str = "t1", interval: int = 60) -> DeviceRecord:
    return DeviceRecord(device_id, tenant, DeviceStatus.ACTIVE, "scale", interval)


def test_equal_entries_keep_the_held_object_changed_ones_are_replaced() -> None:
    held = {"a": _record("a"), "b": _record("b"), "gone": _record("gone")}
    fresh = [("a", _record("a")), ("b", _record("b", interval=30)), ("new", _record("new"))]
    out = merged(held, fresh)
    assert list(out) == ["a", "b", "new"]  # the removed device is gone
    assert out["a"] is held["a"]
    assert out["b"] is fresh[1][1] and out["b"].heartbeat_interval_s == 30
    assert out["new"] is fresh[2][1]


def test_registry_rows_share_tenant_and_type_strings_and_sort_assignments() -> None:
    person = uuid4()
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    # strings built at run time, as a driver hands them over: equal, but distinct objects
    tenants = ["".join(["kommun", "-a"]) for _ in range(2)]
    types = ["".join(["sca", "le"]) for _ in range(2)]
    assert tenants[0] is not tenants[1]
    devices = [
        ("d1", tenants[0], "active", types[0], 60),
        ("d2", tenants[1], "active", types[1], 60),
    ]
    assignments = [("d1", person, late, None), ("d1", person, early, late)]
    records = dict(queries._records(devices, assignments))
    assert records["d1"].tenant_id is records["d2"].tenant_id
    assert records["d1"].device_type is records["d2"].device_type
    assert [a.valid_from for a in records["d1"].assignments] == [early, late]
    assert records["d2"].assignments == ()
    assert records["d1"].assignments[0] == Assignment(person, early, late)
