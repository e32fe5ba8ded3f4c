"""Binding around a move to another municipality (#19.2): pure, no I/O.

A resident of kommun-a (person record ALICE_A) moves to kommun-b (ALICE_B) on MOVE. The
device's assignment in kommun-a ends at MOVE and kommun-b's, which continues it, begins
there. Until the workers apply the move the device row is still kommun-a's; after, it is
kommun-b's. Either way a message lands by its own stamp.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from gateway.domain.registry import (
    Assignment,
    Binding,
    DeviceStatus,
    Refusal,
    Refused,
    bind,
    device_record,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MOVE = datetime(2026, 3, 31, 22, tzinfo=UTC)  # 1 April, local midnight
ALICE_A, ALICE_B, BOB = uuid4(), uuid4(), uuid4()
SECOND = timedelta(seconds=1)


def moved(device_tenant: str) -> list[Assignment]:
    """The assignments as the registry cache holds them with the device row in
    ``device_tenant`` (an assignment of the device's own tenant carries None)."""
    a = "kommun-a" if device_tenant != "kommun-a" else None
    b = "kommun-b" if device_tenant != "kommun-b" else None
    return [Assignment(ALICE_A, T0, MOVE, a), Assignment(ALICE_B, MOVE, None, b, True)]


def record(device_tenant: str, *extra_before: Assignment):  # type: ignore[no-untyped-def]
    return device_record("gps-1", device_tenant, DeviceStatus.ACTIVE, "gps_alarm", 60,
                         [*extra_before, *moved(device_tenant)])  # fmt: skip


def test_before_the_move_is_applied_each_side_of_the_date_lands_in_its_tenant() -> None:
    device = record("kommun-a")
    assert bind(device, MOVE - SECOND, needs_person=True) == Binding("kommun-a", ALICE_A)
    assert bind(device, MOVE, needs_person=True) == Binding("kommun-b", ALICE_B)
    assert bind(device, MOVE + SECOND, needs_person=True) == Binding("kommun-b", ALICE_B)
    # device health too: the tenant and person record of that side
    assert bind(device, MOVE - SECOND, needs_person=False) == Binding("kommun-a", ALICE_A)


def test_after_the_move_is_applied_a_late_message_from_before_still_lands_with_the_old() -> None:
    device = record("kommun-b")
    assert bind(device, MOVE - timedelta(days=3), needs_person=True) == Binding("kommun-a", ALICE_A)
    assert bind(device, MOVE + SECOND, needs_person=True) == Binding("kommun-b", ALICE_B)


def test_a_last_will_without_a_stamp_goes_to_the_tenant_holding_the_device_row() -> None:
    assert bind(record("kommun-a"), None, needs_person=False) == Binding("kommun-a", ALICE_A)
    assert bind(record("kommun-b"), None, needs_person=False) == Binding("kommun-b", ALICE_B)


def test_a_previous_holder_before_the_resident_is_still_refused() -> None:
    """The security review's rule (#17.2) holds across a move: data stamped while someone
    else held the device is never the moved resident's, nor the earlier holder's."""
    earlier = Assignment(BOB, T0 - timedelta(days=30), T0)
    device = record("kommun-b", earlier)
    refused = bind(device, T0 - timedelta(days=2), needs_person=True)
    assert isinstance(refused, Refused)
    assert refused.reason is Refusal.BEFORE_CURRENT_ASSIGNMENT


def test_binding_at_follows_the_assignment_then() -> None:
    device = record("kommun-a")
    assert device.binding_at(MOVE - SECOND) == Binding("kommun-a", ALICE_A)
    assert device.binding_at(MOVE + SECOND) == Binding("kommun-b", ALICE_B)
    assert device.binding_at(T0 - SECOND) == Binding("kommun-a", None)
