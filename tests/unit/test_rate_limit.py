"""Token buckets: burst, sustained rate, independence of keys, bounded memory."""

from __future__ import annotations

import pytest

from gateway.domain.rate_limit import TokenBuckets


def test_burst_then_refused_then_refilled_at_the_rate() -> None:
    buckets = TokenBuckets(rate_per_s=2.0, burst=3)
    assert [buckets.allow("a", 0.0) for _ in range(4)] == [True, True, True, False]
    assert buckets.retry_after("a", 0.0) == pytest.approx(0.5)
    assert not buckets.allow("a", 0.4)
    assert buckets.allow("a", 0.5 + 0.01)
    assert not buckets.allow("a", 0.52)


def test_sustained_rate_is_what_gets_through() -> None:
    buckets = TokenBuckets(rate_per_s=10.0, burst=5)
    allowed = sum(buckets.allow("a", i / 1000) for i in range(10_000))  # 1000/s for 10 s
    assert 5 + 100 - 1 <= allowed <= 5 + 100 + 1


def test_one_key_exhausted_does_not_touch_another() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=2)
    for _ in range(50):
        buckets.allow("flood", 0.0)
    assert not buckets.allow("flood", 0.0)
    assert buckets.allow("quiet", 0.0)
    assert buckets.allow("quiet", 0.0)


def test_refilled_buckets_are_pruned_so_memory_is_bounded() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=2, min_prune_size=100)
    for i in range(10_000):
        # every key is used once; after 2 s a key's bucket is full again and carries nothing
        buckets.allow(f"dev-{i}", i * 0.01)
    assert len(buckets) <= 2 * 200 + 1


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=1)
    assert buckets.allow("a", 10.0)
    assert not buckets.allow("a", 5.0)
    assert not buckets.allow("a", 10.5)


def test_invalid_parameters() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBuckets(rate_per_s=0, burst=1)


def test_a_fleet_at_its_usual_pace_holds_few_buckets() -> None:
    """10,000 devices, each a message a minute at the ingest defaults: a device's bucket is
    full again a tenth of a second after its message, so the table stays near the default
    pruning floor instead of holding a bucket for every device of the fleet."""
    buckets = TokenBuckets(rate_per_s=10.0, burst=1_000)
    devices = 10_000
    for n in range(3 * devices):  # three minutes, messages spread evenly
        assert buckets.allow(f"dev-{n % devices}/data", n * 60.0 / devices)
    assert len(buckets) <= 1_024


def test_a_pruned_bucket_starts_full_like_a_kept_one() -> None:
    buckets = TokenBuckets(rate_per_s=1.0, burst=3, min_prune_size=2)
    assert buckets.allow("a", 0.0)
    for i in range(10):  # other keys trigger pruning; "a" is full again after 1 s
        buckets.allow(f"k{i}", 5.0 + i)
    assert [buckets.allow("a", 20.0) for _ in range(4)] == [True, True, True, False]
