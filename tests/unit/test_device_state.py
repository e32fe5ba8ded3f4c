"""Per-device state in columns: what goes in comes out (as snapshots), newest times win,
unknown stays unknown, and the dirty set feeds the batch upsert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from firmware_contracts.messages import Battery, Heartbeat, Status, Weight
from gateway.domain.instants import from_us, to_us
from gateway.worker.fleet.device_state import DeviceState, DeviceStates

T0 = datetime(2026, 5, 4, 7, 0, tzinfo=UTC)
STOCKHOLM_SUMMER = timezone(timedelta(hours=2))


def hb(ts: datetime, battery: int | None = None, rssi: int | None = None) -> Heartbeat:
    return Heartbeat(v=1, type="heartbeat", id="h", ts=ts, battery_percent=battery, rssi_dbm=rssi)


def test_new_device_then_updates() -> None:
    states = DeviceStates()
    assert states.get("d") is None and len(states) == 0
    states.observe("d", "t1", hb(T0, battery=80, rssi=-70), T0 + timedelta(seconds=1))
    assert states.get("d") == DeviceState("t1", T0 + timedelta(seconds=1), T0, 80, -70, None, True)
    states.observe("d", "t1", Battery(v=1, type="battery", id="b", ts=T0, percent=55), T0)
    state = states.get("d")
    assert state is not None
    assert state.battery_percent == 55 and state.rssi_dbm == -70
    assert state.last_seen == T0 + timedelta(seconds=1)  # an earlier receipt does not go back
    offline = Status(v=1, type="status", state="offline", firmware="2.1.0")
    states.observe("d", "t2", offline, T0 + timedelta(seconds=5))
    assert states.get("d") == DeviceState(
        "t2", T0 + timedelta(seconds=5), T0, 55, -70, "2.1.0", False
    )


def test_device_time_only_moves_forward_and_keeps_its_instant() -> None:
    states = DeviceStates()
    local = T0.astimezone(STOCKHOLM_SUMMER)
    states.observe("d", "t", hb(local), T0)
    states.observe("d", "t", hb(local - timedelta(hours=1)), T0)  # a replayed older one
    state = states.get("d")
    assert state is not None and state.last_ts == T0 and state.last_ts.tzinfo is not None
    weight = Weight(v=1, type="weight", id="w", ts=T0 + timedelta(minutes=1), kg=80.0)
    states.observe("d", "t", weight, T0)
    state = states.get("d")
    assert state is not None and state.last_ts == T0 + timedelta(minutes=1)
    assert state.online is True  # any other message means the device is up


def test_unknown_stays_unknown() -> None:
    states = DeviceStates()
    will = Status(v=1, type="status", state="offline")  # a last will: no id, no ts
    states.observe("d", "t", will, T0)
    assert states.get("d") == DeviceState("t", T0, None, None, None, None, False)


def test_restore_replaces_and_snapshots_do_not_alias() -> None:
    states = DeviceStates()
    states.observe("d", "t", hb(T0, battery=10), T0)
    states.restore("d", DeviceState("t", T0 - timedelta(days=1), None, None, -80, "1.0", None))
    states.restore("e", DeviceState("t", T0, T0, 90, None, None, True))
    assert states.get("d") == DeviceState("t", T0 - timedelta(days=1), None, None, -80, "1.0")
    snapshot = states.get("e")
    assert snapshot is not None
    snapshot.battery_percent = 1
    assert states.get("e") == DeviceState("t", T0, T0, 90, None, None, True)
    assert sorted(d for d, _ in states.items()) == ["d", "e"]


def test_dirty_devices_are_taken_once_and_can_be_put_back() -> None:
    states = DeviceStates()
    states.observe("a", "t", hb(T0), T0)
    states.observe("b", "t", hb(T0), T0)
    dirty = dict(states.take_dirty())
    assert set(dirty) == {"a", "b"} and dirty["a"].last_seen == T0
    assert states.take_dirty() == []
    states.mark_dirty(["a", "never-seen"])
    assert [d for d, _ in states.take_dirty()] == ["a"]


@given(
    st.datetimes(datetime(2, 1, 1), datetime(9998, 1, 1), timezones=st.just(UTC)),
    st.integers(-12, 14),
)
def test_instants_round_trip_exactly(at: datetime, hours: int) -> None:
    local = at.astimezone(timezone(timedelta(hours=hours)))
    assert from_us(to_us(local)) == at
    assert to_us(at + timedelta(microseconds=1)) == to_us(at) + 1
