"""The registry in columns, and the one index of device positions it shares with the device
states and the silence deadlines. Pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given
from hypothesis import strategies as st

from firmware_contracts.messages import Heartbeat
from gateway.domain.fleet_index import FleetIndex
from gateway.domain.registry import Assignment, DeviceStatus, device_record
from gateway.domain.silence import SilenceWatch
from gateway.worker.fleet.device_state import DeviceStates
from gateway.worker.fleet.registry_table import RegistryTable

T0 = datetime(2026, 11, 23, 21, 0, tzinfo=UTC)
ALICE, BOB = uuid4(), uuid4()


def _record(device_id: str, status: DeviceStatus = DeviceStatus.ACTIVE, *held: Assignment):  # type: ignore[no-untyped-def]
    return device_record(device_id, "kommun-a", status, "gps_alarm", 60, held)


def test_what_is_put_is_what_comes_back_in_either_shape() -> None:
    table = RegistryTable()
    held = _record("held", DeviceStatus.ACTIVE, Assignment(ALICE, T0, None))
    handed_over = _record(
        "handed-over", DeviceStatus.ACTIVE,
        Assignment(ALICE, T0, T0 + timedelta(days=3)),
        Assignment(BOB, T0 + timedelta(days=3), None),
    )  # fmt: skip
    in_stock = _record("in-stock", DeviceStatus.IN_STOCK)
    for record in (held, handed_over, in_stock):
        table.put(record)
    assert table.get("held") == held and table.get("held").holder is ALICE  # type: ignore[union-attr]
    assert table.get("handed-over") == handed_over
    assert table.get("in-stock") == in_stock
    assert table.get("unknown") is None
    assert len(table) == 3
    assert sorted(table.device_ids()) == ["handed-over", "held", "in-stock"]
    assert sorted(r.device_id for r in table.records()) == sorted(table.device_ids())


def test_a_changed_device_replaces_its_values_a_removed_one_is_gone() -> None:
    table = RegistryTable()
    table.put(_record("d1", DeviceStatus.ACTIVE, Assignment(ALICE, T0, None)))
    returned = _record("d1", DeviceStatus.RETURNED, Assignment(ALICE, T0, T0 + timedelta(days=1)))
    table.put(returned)
    assert table.get("d1") == returned and len(table) == 1
    table.remove("d1")
    table.remove("d1")  # twice: nothing more happens
    assert table.get("d1") is None and len(table) == 0 and list(table.records()) == []
    table.put(returned)  # registered again: back at its old position
    assert table.get("d1") == returned and len(table) == 1 and len(table.index) == 1


def test_a_full_reload_is_taken_whole_and_keeps_the_positions() -> None:
    table = RegistryTable()
    table.put(_record("kept"))
    table.put(_record("removed"))
    fresh = table.fresh()
    fresh.put(_record("kept", DeviceStatus.RETIRED))
    fresh.put(_record("new"))
    assert table.get("new") is None  # still serving the old contents while loading
    table.adopt(fresh)
    assert table.get("kept") == _record("kept", DeviceStatus.RETIRED)
    assert table.get("removed") is None and table.get("new") == _record("new")
    assert len(table) == 2
    assert [table.index.find(d) for d in ("kept", "removed", "new")] == [0, 1, 2]


def test_records_carry_the_index_string_not_the_callers() -> None:
    table = RegistryTable()
    first = "".join(["dev", "-1"])
    table.put(_record(first))
    asked = "".join(["dev", "-", "1"])
    assert asked is not first
    record = table.get(asked)
    assert record is not None and record.device_id is first


def test_one_index_for_the_registry_the_states_and_the_silence_deadlines() -> None:
    index = FleetIndex()
    table, states, watch = RegistryTable(index), DeviceStates(index), SilenceWatch(index)
    table.put(_record("a"))
    heartbeat = Heartbeat(v=1, type="heartbeat", id="h1", ts=T0, battery_percent=80)
    # a device the registry does not know yet still gets state and a deadline
    states.observe("b", "kommun-a", heartbeat, T0)
    watch.touch("b", T0, timedelta(seconds=60))
    assert table.get("b") is None and len(table) == 1
    assert len(states) == 1 and states.get("a") is None and states.last_seen("b") == T0
    assert "b" in watch and "a" not in watch and len(watch) == 1
    table.put(_record("b"))  # registered later: the columns grow to the index's position
    states.observe("a", "kommun-a", heartbeat, T0)
    assert table.get("b") == _record("b") and len(states) == 2
    assert [d for d, _ in states.items()] == ["a", "b"] and len(index) == 2
    watch.forget("b")
    assert "b" not in watch and len(watch) == 0
    assert watch.due(T0 + timedelta(minutes=5)) == []


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=60))
def test_the_table_holds_what_a_dict_of_records_would(ops: list[tuple[str, bool]]) -> None:
    table, reference = RegistryTable(), {}
    for n, (device_id, put) in enumerate(ops):
        if put:
            record = _record(
                device_id, DeviceStatus.ACTIVE, Assignment(ALICE, T0 + timedelta(n), None)
            )
            table.put(record)
            reference[device_id] = record
        else:
            table.remove(device_id)
            reference.pop(device_id, None)
    assert {r.device_id: r for r in table.records()} == reference
    assert len(table) == len(reference)
