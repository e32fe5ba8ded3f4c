"""Settling the heap once the gateway has started: what was built by then (modules, the
app, the registry and rules caches) lives as long as the process."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc


def settle() -> None:
    """Collect once, then move every surviving object out of the cyclic collector's sight
    (``gc.freeze``), so its full collections stay short and do not stretch the alarm
    path's or the API's tail latency. Then hand the C heap's free pages back to the
    system (glibc's ``malloc_trim``): start-up's short-lived objects (query results,
    migration, schema building) leave pages behind that would otherwise stay resident."""
    gc.collect()
    gc.freeze()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    trim(0)
