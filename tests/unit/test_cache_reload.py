"""A cache's full reload keeps the objects it already holds where nothing changed."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from gateway.adapters.postgres import queries
from gateway.adapters.postgres.listen import kept
from gateway.domain.registry import Assignment
from gateway.worker.fleet.canon import PERSON_IDS, Canon


def test_an_equal_entry_keeps_the_held_object_a_changed_one_is_replaced() -> None:
    held = {"a": ("kommun-a", 60), "b": ("kommun-a", 60)}
    assert kept(held, "a", ("kommun-a", 60)) is held["a"]
    fresh = ("kommun-a", 30)
    assert kept(held, "b", fresh) is fresh
    assert kept(held, "new", fresh) is fresh


def test_registry_rows_share_tenant_type_and_interval_and_sort_assignments() -> None:
    person = uuid4()
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)
    # strings built at run time, as a driver hands them over: equal, but distinct objects
    tenants = ["".join(["kommun", "-a"]) for _ in range(2)]
    types = ["".join(["sca", "le"]) for _ in range(2)]
    assert tenants[0] is not tenants[1]
    intervals = [int("".join(["3", "00"])) for _ in range(2)]  # above the cached small ints
    assert intervals[0] is not intervals[1]
    d1 = ("d1", tenants[0], "active", types[0], intervals[0])
    # one row per assignment (newest first here), one row with no person for d2
    d1_rows = [(*d1, person, late, None, tenants[0], False, None),
               (*d1, person, early, late, tenants[0], False, None)]  # fmt: skip
    d2_rows = [("d2", tenants[1], "active", types[1], intervals[1], None, None, None, None,
                None, None)]  # fmt: skip
    records = {r.device_id: r for r in (queries._record(d1_rows), queries._record(d2_rows))}
    assert records["d1"].tenant_id is records["d2"].tenant_id
    assert records["d1"].device_type is records["d2"].device_type
    assert records["d1"].heartbeat_interval_s is records["d2"].heartbeat_interval_s
    assert [a.valid_from for a in records["d1"].assignments] == [early, late]
    assert records["d2"].assignments == ()
    assert records["d1"].assignments[0] == Assignment(person, early, late)


def test_a_units_assignment_row_is_a_units() -> None:
    unit, since = uuid4(), datetime(2026, 1, 1, tzinfo=UTC)
    record = queries._record([("d1", "t", "active", "scale", 60, None, since, None, "t", False,
                               unit)])  # fmt: skip
    assert record.holder is None and record.unit_at(since) == unit
    assert record.assignments == (Assignment(None, since, None, unit_id=unit),)


def test_a_persons_id_is_one_object_across_caches_and_let_go_when_unused() -> None:
    canon: Canon[UUID] = Canon()
    first = uuid4()
    again = UUID(str(first))  # the same id as another query hands it over
    held = [canon(first)]
    assert canon(again) is first
    canon(uuid4())  # read once, then held by nobody
    canon.sweep()
    assert len(canon) == 1
    held.clear()
    del first
    canon.sweep()
    assert len(canon) == 0


def test_registry_assignments_use_the_shared_person_ids() -> None:
    person = uuid4()
    since = datetime(2026, 1, 1, tzinfo=UTC)
    record = queries._record(
        [("d1", "t", "active", "scale", 60, person, since, None, "t", False, None)]
    )
    assert record.holder is PERSON_IDS(UUID(str(person)))
