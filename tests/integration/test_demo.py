"""The README's first command as a new user meets it: ``welfare-gateway demo`` prints the
console, a token and a curl line that work as printed, says what the fleet will do, and
in its first minute shows readings and one true alarm of each kind a night team meets,
with nothing on stderr (no tracebacks, no broker noise) and no false alarm."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]

#: what device_sims/scenarios/demo.toml scripts, each exactly once
EXPECTED = {
    "button", "fall", "geofence_exit", "battery_low", "device_silent", "blood_pressure",
    "weight_gain", "door_unlocked",
}  # fmt: skip


def test_demo_first_minute_is_coherent_and_its_printed_lines_work(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WG_")}
    env["WG_API_PORT"] = "0"
    stderr = (tmp_path / "stderr").open("w+")
    demo = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--duration", "50"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True,
    )  # fmt: skip
    try:
        assert demo.stdout is not None
        banner: list[str] = []
        for line in demo.stdout:  # ends at "Stop with Ctrl-C." (or at exit, failing below)
            banner.append(line.rstrip("\n"))
            if line.startswith("Stop with Ctrl-C."):
                break
        text = "\n".join(banner)
        assert "Stop with Ctrl-C." in text, text + (tmp_path / "stderr").read_text()

        # In this order: console, token, API, curl.
        labels = [line.split(":", 1)[0].strip() for line in banner if line.startswith("  ")]
        labels = [label for label in labels if label in ("console", "token", "API", "try")]
        assert labels == ["console", "token", "API", "try"], banner

        console = re.search(r"console:\s+(\S+)", text)
        token = re.search(r"token:\s+(\S+)", text)
        curl = re.search(r"try:\s+(curl .+)", text)
        assert console and token and curl, text
        assert console.group(1).endswith(f"#access_token={token.group(1)}")
        page = httpx.get(console.group(1).split("#")[0], timeout=10)
        assert page.status_code == 200 and "<html" in page.text.lower()

        # The curl line needs no editing: run what it says.
        args = shlex.split(curl.group(1))
        header = args[args.index("-H") + 1]
        name, value = header.split(": ", 1)
        answer = httpx.get(args[-1], headers={name: value}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == 9  # the scenario's devices

        out = demo.stdout.read()  # to the end: the demo stops after --duration
        demo.wait(timeout=150)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        stderr.close()
    err = (tmp_path / "stderr").read_text()
    assert demo.returncode == 0, out[-3000:] + err[-3000:]

    # What the fleet does next is announced, with each scripted incident.
    assert "What the simulated fleet does in the next minutes:" in out
    for words in ("alarm button", "fall", "wander", "battery runs flat", "leaves it unlocked",
                  "192/108", "80.9 kg"):  # fmt: skip
        assert words in out, words

    # Nothing on stderr: no traceback, no warning from the broker or the simulators.
    assert err.strip() == "", err[-3000:]

    stored = ast.literal_eval(_line(out, "stored: "))
    assert stored["readings"] >= 5 and stored["positions"] > 0, stored
    assert stored["quarantine"] == 0, stored
    raised = ast.literal_eval(_line(out, "alarms raised while the fleet ran: "))
    assert raised == dict.fromkeys(EXPECTED, 1), raised  # no false unauthorised_unlock

    # Readings within the first ~10 s, every alarm within the first minute (progress
    # lines come every 5 s from the fleet's start).
    progress = [line for line in out.splitlines() if line.startswith("stored so far: ")]
    first = ast.literal_eval(progress[0].removeprefix("stored so far: ").split("; alarms: ")[0])
    assert first["readings"] > 0, progress[0]
    within_a_minute = ast.literal_eval(progress[min(len(progress), 12) - 1].split("; alarms: ")[1])
    assert set(within_a_minute) == EXPECTED, within_a_minute


def _line(out: str, prefix: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(prefix)).removeprefix(prefix)
