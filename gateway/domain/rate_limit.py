"""Token buckets per key: a sustained rate with a burst allowance.

Pure: the caller passes the time (monotonic seconds). Used at ingest per device and
channel class (a device flooding telemetry cannot use up the allowance of its own alarm
events), and by the API per caller. Buckets that have refilled completely carry no state
and are pruned whenever the table has doubled since the last pruning (amortised O(1) per
call, no periodic full scan on the event loop), so memory follows the keys recently
active, not every key ever seen (device ids in topics are untrusted input). The table is
first pruned at ``min_prune_size`` keys: small, because at a fleet's usual pace a device's
bucket is full again long before its next message (10 msgs/s refill one token in 0.1 s;
devices report about once a minute), so a larger floor would only hold a bucket and a key
string for nearly every device of the fleet without holding any state.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, rate_per_s: float, burst: int, *, min_prune_size: int = 1_024) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._min_prune_size = min_prune_size
        self._prune_at_size = min_prune_size

    def allow(self, key: str, now: float) -> bool:
        """Take one token for ``key``; False when its bucket is empty."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._prune_at_size:
                self._prune(now)
            self._buckets[key] = _Bucket(self.burst - 1.0, now)
            return True
        tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        bucket.at = max(bucket.at, now)
        if tokens < 1.0:
            bucket.tokens = tokens
            return False
        bucket.tokens = tokens - 1.0
        return True

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until ``key`` has a token again (0 if it has one now)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        tokens = min(self.burst, bucket.tokens + max(0.0, now - bucket.at) * self.rate)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.tokens + (now - bucket.at) * self.rate < self.burst
        }
        self._prune_at_size = max(self._min_prune_size, 2 * len(self._buckets))
