"""The silence watch's queue of one-second buckets: ordering, expiry, forgetting, and the
same answers as a plain heap of (deadline, device) entries (the previous implementation,
kept here as the reference)."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.silence import SilenceWatch

T0 = datetime(2026, 11, 23, 23, 0, tzinfo=UTC)
BOUND = timedelta(seconds=150)


class HeapWatch:
    """The reference: a heap with one entry per device, rescheduled when it comes due."""

    def __init__(self) -> None:
        self._deadline: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._scheduled: set[str] = set()
        self._reported: set[str] = set()

    def touch(self, device_id: str, seen_at: datetime, bound: timedelta) -> bool:
        deadline = seen_at + bound
        current = self._deadline.get(device_id)
        was_reported = device_id in self._reported
        if current is not None and deadline <= current and not was_reported:
            return False
        self._deadline[device_id] = deadline
        if device_id not in self._scheduled:
            heapq.heappush(self._heap, (deadline, device_id))
            self._scheduled.add(device_id)
        self._reported.discard(device_id)
        return was_reported

    def forget(self, device_id: str) -> None:
        self._deadline.pop(device_id, None)
        self._reported.discard(device_id)

    def mark_silent(self, device_id: str) -> None:
        self._reported.add(device_id)

    def due(self, now: datetime) -> list[str]:
        found = []
        while self._heap and self._heap[0][0] <= now:
            _, device_id = heapq.heappop(self._heap)
            self._scheduled.discard(device_id)
            deadline = self._deadline.get(device_id)
            if deadline is None or device_id in self._reported:
                continue
            if deadline > now:
                heapq.heappush(self._heap, (deadline, device_id))
                self._scheduled.add(device_id)
                continue
            self._reported.add(device_id)
            found.append(device_id)
        return found

    def heap_size(self) -> int:
        return len(self._heap)


def test_due_in_deadline_order_and_only_once() -> None:
    watch = SilenceWatch()
    watch.touch("late", T0 + timedelta(seconds=30), BOUND)
    watch.touch("early", T0, BOUND)
    watch.touch("middle", T0 + timedelta(seconds=10, milliseconds=500), BOUND)
    assert watch.next_deadline() == T0 + BOUND
    assert watch.due(T0 + BOUND - timedelta(microseconds=1)) == []
    assert watch.due(T0 + BOUND + timedelta(minutes=1)) == ["early", "middle", "late"]
    assert watch.due(T0 + timedelta(hours=1)) == []
    assert all(watch.is_silent(d) for d in ("early", "middle", "late"))
    assert watch.heap_size() == 0 and watch.next_deadline() is None
    assert len(watch) == 3  # still watched: a message brings a device back


def test_exact_to_the_microsecond_within_a_second() -> None:
    watch = SilenceWatch()
    watch.touch("a", T0 + timedelta(milliseconds=200), BOUND)
    watch.touch("b", T0 + timedelta(milliseconds=700), BOUND)
    deadline_a = T0 + timedelta(milliseconds=200) + BOUND
    assert watch.due(deadline_a - timedelta(microseconds=1)) == []
    assert watch.due(deadline_a) == ["a"]
    assert watch.due(deadline_a + timedelta(milliseconds=499)) == []  # b: in the same second
    assert watch.due(deadline_a + timedelta(milliseconds=500)) == ["b"]


def test_heard_from_moves_the_deadline_without_a_second_entry() -> None:
    watch = SilenceWatch()
    for n in range(100):
        watch.touch("d", T0 + timedelta(seconds=n), BOUND)
    assert watch.heap_size() == 1
    assert watch.due(T0 + timedelta(seconds=200)) == []  # entry moved on to the new deadline
    assert watch.heap_size() == 1
    assert watch.due(T0 + timedelta(seconds=99) + BOUND) == ["d"]


def test_back_after_being_reported_is_watched_again() -> None:
    watch = SilenceWatch()
    watch.touch("d", T0, BOUND)
    assert watch.due(T0 + BOUND) == ["d"]
    assert watch.touch("d", T0 + timedelta(hours=1), BOUND) is True
    assert not watch.is_silent("d") and watch.heap_size() == 1
    assert watch.due(T0 + timedelta(hours=1) + BOUND) == ["d"]


def test_last_will_then_message_then_silence() -> None:
    watch = SilenceWatch()
    watch.touch("d", T0, BOUND)
    watch.mark_silent("d")  # offline status: reported by other means, its entry is queued
    assert watch.due(T0 + BOUND) == []  # not reported twice
    assert watch.touch("d", T0 + timedelta(minutes=5), BOUND) is True
    assert watch.due(T0 + timedelta(minutes=5) + BOUND) == ["d"]


def test_forgotten_device_is_not_reported_and_its_entry_goes() -> None:
    watch = SilenceWatch()
    watch.touch("gone", T0, BOUND)
    watch.touch("kept", T0, BOUND)
    watch.forget("gone")
    assert "gone" not in watch and len(watch) == 1
    assert watch.due(T0 + BOUND) == ["kept"]
    assert watch.heap_size() == 0


def test_forgotten_then_watched_again_keeps_one_entry() -> None:
    watch = SilenceWatch()
    watch.touch("d", T0, BOUND)
    watch.forget("d")
    watch.touch("d", T0 + timedelta(seconds=10), BOUND)  # re-activated before its entry is due
    assert watch.heap_size() == 1
    assert watch.due(T0 + BOUND) == []
    assert watch.due(T0 + timedelta(seconds=10) + BOUND) == ["d"]
    watch.forget("d")  # forgotten after being reported: it had no entry left
    watch.touch("d", T0 + timedelta(minutes=10), BOUND)
    assert watch.heap_size() == 1
    assert watch.due(T0 + timedelta(minutes=10) + BOUND) == ["d"]


devices = st.sampled_from(["a", "b", "c", "d"])
seconds = st.integers(0, 600)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), devices, seconds, st.integers(1, 200)),
        st.tuples(st.just("forget"), devices),
        st.tuples(st.just("mark_silent"), devices),
        st.tuples(st.just("due"), seconds),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None)
@given(operations)
def test_same_answers_as_a_heap_of_entries(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    """Whole seconds, where a one-second bucket holds exactly one deadline."""
    watch, reference = SilenceWatch(), HeapWatch()
    clock = 0
    for op in ops:
        match op:
            case ("touch", device, at, bound_s):
                seen, bound = T0 + timedelta(seconds=at), timedelta(seconds=bound_s)
                assert watch.touch(device, seen, bound) == reference.touch(device, seen, bound)
            case ("forget", device):
                watch.forget(device)
                reference.forget(device)
            case ("mark_silent", device):
                watch.mark_silent(device)
                reference.mark_silent(device)
            case ("due", step):
                clock += step
                now = T0 + timedelta(seconds=clock)
                assert sorted(watch.due(now)) == sorted(reference.due(now))
        assert watch.heap_size() == reference.heap_size()
        for device in "abcd":
            assert watch.is_silent(device) == (device in reference._reported)
            assert (device in watch) == (device in reference._deadline)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(devices, st.integers(0, 600_000)), max_size=60), st.integers(0, 900))
def test_never_early_never_missed(touches: list[tuple[str, int]], end_s: int) -> None:
    """Any times: a device is reported only once its deadline has passed, and by a call at
    or after its deadline."""
    watch = SilenceWatch()
    latest: dict[str, datetime] = {}
    for device, ms in touches:
        seen = T0 + timedelta(milliseconds=ms)
        watch.touch(device, seen, BOUND)
        latest[device] = max(latest.get(device, seen), seen)
    reported: dict[str, datetime] = {}
    for tenth in range(0, end_s * 10, 7):
        now = T0 + timedelta(milliseconds=100 * tenth)
        for device in watch.due(now):
            assert device not in reported
            assert latest[device] + BOUND <= now
            reported[device] = now
    end = T0 + timedelta(milliseconds=100 * max(0, end_s * 10 - 1))
    for device in set(watch.due(end)) | set(reported):
        reported.setdefault(device, end)
    assert set(reported) == {d for d, seen in latest.items() if seen + BOUND <= end}
