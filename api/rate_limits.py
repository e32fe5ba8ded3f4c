"""API rate limits: a token bucket per signed-in caller, and one per client address for
failed sign-ins. Excess gets 429 with Retry-After (RFC 9457 problem details)."""

from __future__ import annotations

import math
import time

from fastapi import HTTPException

from gateway.config.settings import RateLimitSettings
from gateway.domain.rate_limit import TokenBuckets


class ApiLimits:
    def __init__(self, settings: RateLimitSettings) -> None:
        self._buckets = TokenBuckets(settings.api_requests_per_minute / 60.0, settings.api_burst)

    def check(self, key: str) -> None:
        now = time.monotonic()
        if not self._buckets.allow(key, now):
            wait = max(1, math.ceil(self._buckets.retry_after(key, now)))
            raise HTTPException(429, "too many requests; slow down", {"Retry-After": str(wait)})
