"""bench.ingest's paced phases: the bare consumer is offered the same load as the worker.

The paced CPU ratio (issue #22) divides the worker's CPU per message at PACED_RATE by the
bare consumer's; a per-message CPU cost depends on the rate (fewer messages per wake-up at
a lower one), so both must be measured at the same offered rate."""

from __future__ import annotations

from pathlib import Path

import psutil

from bench import ingest
from bench.cpu import CpuMeter
from tests.services import Mosquitto


def test_the_bare_consumers_paced_load_is_offered_at_the_paced_rate(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    assert mosquitto.proc is not None
    meter = CpuMeter(None, psutil.Process(mosquitto.proc.pid), None)
    # two publisher processes of 20 devices, 50 messages each: 2,000 messages, about 1 s
    bare = ingest._bare_paced(tmp_path, mosquitto.port, 2, 40, 50, 0, meter)
    assert bare["messages"] == 2000
    # pacing only holds publishers back, so an upper bound: a load offered at twice the
    # rate (each process at the whole PACED_RATE) took about half a second
    assert bare["offered_msgs_per_s"] <= ingest.PACED_RATE * 1.1
