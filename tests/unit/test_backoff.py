"""gateway.support.backoff: the one backoff every reconnect and retry loop uses."""

from __future__ import annotations

import random

import pytest

from gateway.support.backoff import Backoff


def test_reconnect_sequence_doubles_from_base_to_cap() -> None:
    backoff = Backoff(0.1, 5.0)  # MQTT and PostgreSQL reconnects
    assert [backoff.next() for _ in range(9)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    )
    writer = Backoff(0.05, 2.0)  # the batch writer
    assert [writer.next() for _ in range(8)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    )


def test_without_jitter_it_is_the_old_hand_written_loop() -> None:
    backoff, old = Backoff(0.1, 5.0), 0.1
    for _ in range(40):
        assert backoff.next() == old
        old = min(old * 2, 5.0)


def test_cap_holds_for_any_number_of_attempts() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(3))
    waits = [backoff.next() for _ in range(5000)]
    assert max(waits) <= 30.0
    assert backoff.delay(10**9) <= 30.0  # no overflow, however many attempts
    assert Backoff(0.0, 30.0).delay(50) == 0.0
    assert Backoff(2.0, 1.0).delay(0) == 1.0  # a base above the cap is capped


def test_reset_starts_again_at_base() -> None:
    backoff = Backoff(0.1, 5.0)
    for _ in range(5):
        backoff.next()
    assert backoff.attempt == 5
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next() == 0.1
    assert backoff.next() == 0.2


def test_peek_is_the_coming_wait_and_does_not_move_on() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(7))
    for _ in range(6):
        coming = backoff.peek()
        assert backoff.peek() == coming  # drawn once
        assert backoff.next() == coming
    coming = backoff.peek()
    backoff.reset()
    assert backoff.peek() <= 0.5  # a reset drops the drawn wait


@pytest.mark.parametrize("jitter", [0.25, 0.5, 1.0])
def test_jitter_stays_within_its_fraction_of_the_ceiling(jitter: float) -> None:
    backoff = Backoff(0.5, 8.0, jitter=jitter, rng=random.Random(1))
    for attempt in range(12):
        ceiling = min(8.0, 0.5 * 2**attempt)
        for _ in range(200):
            wait = backoff.delay(attempt)
            assert ceiling * (1 - jitter) <= wait <= ceiling


def test_seeded_jitter_is_reproducible_and_varies() -> None:
    a = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(42))
    b = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(42))
    first = [a.next() for _ in range(10)]
    assert first == [b.next() for _ in range(10)]
    assert len(set(first[6:])) > 1  # at the cap, still spread


def test_half_jitter_draws_as_the_simulators_and_the_webhook_sender_did() -> None:
    """One uniform draw per wait, the same numbers as before the helper existed (the
    simulators' ``ceiling/2 + uniform(0, ceiling/2)``, the webhook sender's
    ``uniform(ceiling/2, ceiling)``), so a seeded fleet run is unchanged."""
    backoff = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(9))
    old_rng = random.Random(9)
    for attempt in range(12):
        ceiling = min(30.0, 0.5 * 2.0**attempt)
        assert backoff.next() == ceiling / 2.0 + old_rng.uniform(0.0, ceiling / 2.0)
    webhook = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(5))
    old_rng = random.Random(5)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** min(attempt - 1, 30))
        assert webhook.delay(attempt - 1) == old_rng.uniform(ceiling / 2, ceiling)


def test_at_least_honours_a_retry_after_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 30.0, jitter=0.5, rng=random.Random(2))
    assert backoff.delay(0, at_least=10.0) == 10.0
    assert backoff.delay(0, at_least=120.0) == 30.0  # never beyond the cap
    assert 4.0 <= backoff.delay(4, at_least=1.0) <= 8.0  # the backoff, when longer
    assert backoff.delay(0, at_least=None) <= 0.5


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="base_s >= 0"):
        Backoff(-0.1, 5.0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(0.1, 5.0, jitter=1.5)
