"""Small-distance geometry around a home position (pure).

Positions near a home are kept as east/north offsets in metres; this module converts
them to latitude/longitude (equirectangular approximation, accurate to well under a
metre over the few kilometres a person walks) and measures great-circle distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_M = 6_371_008.8
_M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180.0


@dataclass(frozen=True, slots=True)
class GeoPoint:
    lat: float
    lon: float


def offset(origin: GeoPoint, east_m: float, north_m: float) -> GeoPoint:
    """The point ``east_m`` east and ``north_m`` north of ``origin``."""
    lat = origin.lat + north_m / _M_PER_DEG_LAT
    lon = origin.lon + east_m / (_M_PER_DEG_LAT * math.cos(math.radians(origin.lat)))
    return GeoPoint(lat=max(-90.0, min(90.0, lat)), lon=(lon + 180.0) % 360.0 - 180.0)


def distance_m(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle (haversine) distance in metres."""
    phi1, phi2 = math.radians(a.lat), math.radians(b.lat)
    dphi = phi2 - phi1
    dlmb = math.radians(b.lon - a.lon)
    h = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
