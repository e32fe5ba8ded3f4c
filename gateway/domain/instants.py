"""Instants as integer microseconds since the epoch, for state kept per device.

A datetime is a 48-byte object (and a time zone object of its own when the decoder made
it); an int of this size is 32 and fits in an ``array('q')`` at 8. The conversion is
exact both ways, so comparing the ints is comparing the instants. Pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def to_us(at: datetime) -> int:
    """Microseconds since the epoch. A naive ``at`` is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    span = at - EPOCH  # (on the ingest path: this is faster than span // MICROSECOND)
    return (span.days * 86_400 + span.seconds) * 1_000_000 + span.microseconds


def from_us(us: int) -> datetime:
    """The instant ``to_us`` measured, as a UTC datetime (equal to the one measured)."""
    return EPOCH + timedelta(microseconds=us)


def span_us(span: timedelta) -> int:
    """A duration in whole microseconds (exact: a timedelta has no finer resolution)."""
    return span // MICROSECOND
