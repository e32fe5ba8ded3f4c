"""Smoke test of the README's first command: the demo runs with embedded everything
and simulated readings arrive in the database."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_end_to_end_and_stores_simulated_readings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    env["WG_API_PORT"] = "0"
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "15"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "welfare-gateway demo is running" in done.stdout
    assert "API:       http://127.0.0.1:" in done.stdout
    stored_line = next(line for line in done.stdout.splitlines() if line.startswith("stored: "))
    stored = ast.literal_eval(stored_line.removeprefix("stored: "))
    assert stored["device_health"] > 0, stored
    assert stored["readings"] + stored["positions"] > 0, stored
    assert stored["quarantine"] == 0, stored
