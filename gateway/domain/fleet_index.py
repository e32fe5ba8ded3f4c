"""One position per device id, shared by every table the worker keeps per device.

The registry, the devices' last-seen state and the silence deadlines each keep their
fields in columns (arrays and lists, a device's values at its position) instead of an
object per device. The position comes from this one index: one dict and one id string
per device for all of them, where each table would otherwise hold a dict of its own
(with an int object per device, 32 bytes each above 256) and, at worst, a string of its
own for the same id.

A position, once given, stays the device's for the life of the process: a device removed
from the registry keeps it (the tables mark it absent), so no table's columns ever have
to move. A fleet replaces devices over years, not minutes; a restart starts afresh. Pure.
"""

from __future__ import annotations

from collections.abc import Callable


class FleetIndex:
    __slots__ = ("_ids", "_position", "find", "id_at")

    def __init__(self) -> None:
        self._position: dict[str, int] = {}
        self._ids: list[str] = []
        # Read once or more per message, so the dict's and the list's own methods (no
        # call of ours in between). find: the device's position, or None if it has none
        # yet. id_at: the id string the index keeps for the device at a position.
        self.find: Callable[[str], int | None] = self._position.get
        self.id_at: Callable[[int], str] = self._ids.__getitem__

    def add(self, device_id: str) -> int:
        """The device's position, given now if it has none. The index keeps the first id
        string it is given for a device; ``id_at`` hands that one out."""
        position = self._position.get(device_id)
        if position is None:
            position = self._position[device_id] = len(self._ids)
            self._ids.append(device_id)
        return position

    def __len__(self) -> int:
        return len(self._ids)
