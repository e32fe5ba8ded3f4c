"""Pure parts of the one-engine design: who leads, a standby's mirrored book, presence
messages with the worker's start time, the local durable log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from gateway.adapters.durable_log import DurableLog
from gateway.control import protocol as p
from gateway.control.roles import Membership
from gateway.domain.alarms import AlarmBook, AlarmKind

T0 = datetime(2026, 12, 6, 22, 0, tzinfo=UTC)


def test_the_oldest_online_worker_leads_and_a_newcomer_never_displaces_it() -> None:
    m = Membership("b")
    assert m.leader() is None and not m.leads()
    assert m.update("b", 200) is True and m.leads()
    assert m.update("c", 300) is False and m.leads()  # younger: b keeps the engine
    assert m.update("a", 100) is True and m.leader() == "a"  # an older one was there
    assert m.update("a", None) is True and m.leads()  # its will: b takes over
    assert m.update("c", None) is False and m.leads()
    m.clear()  # lost the broker: nothing is known, nobody leads here
    assert m.leader() is None and not m.leads()


def test_a_worker_knows_who_leads_only_once_its_own_presence_is_back() -> None:
    m = Membership("w1")
    m.update("w2", 200)  # another's retained presence came first
    assert m.leader() == "w2" and not m.knows_me()  # not settled: w1 may be older
    m.update("w1", 100)
    assert m.knows_me() and m.leads()


def test_ties_are_broken_by_worker_id() -> None:
    m = Membership("w2")
    m.update("w2", 5)
    m.update("w1", 5)
    assert m.leader() == "w1"


def test_presence_carries_the_start_time() -> None:
    assert p.presence_since(p.presence("w1", True, 123)) == 123
    assert p.presence_since(p.presence("w1", True)) == 0  # an older worker: no seniority
    assert p.presence_since(p.presence("w1", False)) is None
    assert p.presence_since(b"") is None
    with pytest.raises(p.ProtocolError):
        p.presence_since(b'{"v":1,"worker":"w","online":true,"since":"x"}')


def test_a_mirrored_book_follows_versions_and_drops_resolved_alarms() -> None:
    engine, mirror = AlarmBook(), AlarmBook()
    raised = engine.signal(tenant_id="t", kind=AlarmKind.BUTTON, device_id="d", person_id=None,
                           person_ref=None, at=T0, condition=False)  # fmt: skip
    later = T0 + timedelta(seconds=5)
    again = engine.signal(tenant_id="t", kind=AlarmKind.BUTTON, device_id="d", person_id=None,
                          person_ref=None, at=later, condition=False)  # fmt: skip
    alarm_id = raised[0].alarm_id
    assert mirror.apply(again[0].alarm) and mirror.get(alarm_id).occurrences == 2  # type: ignore[union-attr]
    assert not mirror.apply(raised[0].alarm)  # an older version arriving late: ignored
    assert mirror.get(alarm_id).occurrences == 2  # type: ignore[union-attr]
    assert mirror.find("t", "device:d", AlarmKind.BUTTON) is not None
    resolved = engine.resolve(alarm_id, "op", T0 + timedelta(minutes=1), "visited")
    assert mirror.apply(resolved[-1].alarm)
    assert mirror.get(alarm_id) is None and mirror.find("t", "device:d", AlarmKind.BUTTON) is None
    assert not mirror.apply(resolved[-1].alarm)


def test_replace_all_holds_exactly_the_open_alarms_given() -> None:
    book = AlarmBook()
    [e] = book.signal(tenant_id="t", kind=AlarmKind.FALL, device_id="d", person_id=uuid4(),
                      person_ref=None, at=T0, condition=False)  # fmt: skip
    other = AlarmBook()
    [f] = other.signal(tenant_id="t", kind=AlarmKind.TAMPER, device_id="x", person_id=None,
                       person_ref=None, at=T0, condition=False)  # fmt: skip
    book.replace_all([f.alarm])
    assert book.get(e.alarm_id) is None and book.get(f.alarm_id) is not None


def test_durable_log_consumes_compacts_and_skips_a_torn_line(tmp_path: Path) -> None:
    log = DurableLog(tmp_path / "log.jsonl", compact_bytes=10)
    log.append([{"n": 1}, {"n": 2}])
    with open(tmp_path / "log.jsonl", "ab") as f:
        f.write(b'{"n": 3')  # a crash mid-write
    pending = log.pending()
    assert [r["n"] for r, _ in pending] == [1, 2]
    log.consumed(pending[0][1])
    assert [r["n"] for r, _ in DurableLog(tmp_path / "log.jsonl").pending()] == [2]
    log.close()
    (tmp_path / "log.jsonl").write_bytes(b'{"n": 1}\n')
    (tmp_path / "log.jsonl.offset").unlink()
    log = DurableLog(tmp_path / "log.jsonl", compact_bytes=5)
    [(_record, end)] = log.pending()
    log.consumed(end)  # all consumed and past the size: compacted
    assert log.size() == 0 and log.offset() == 0
    log.close()
