"""The latency-distribution figure of docs/performance.md, from a bench/run result.

``python -m bench.plot bench/results/latest.json docs/alarm-latency.png`` (needs the
optional ``bench`` extra: matplotlib).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson


def plot(result: dict[str, Any], out: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alarm = result["alarm_latency_ms"]
    samples = sorted(alarm["samples_ms"])
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    hist.hist(samples, bins=60, color="#3a6ea5")
    hist.set_xlabel("device publish -> operator receives alarm (ms)")
    hist.set_ylabel("alarms")
    hist.set_title(f"{alarm['alarms']} alarms under {alarm['background_msgs_per_s']} msgs/s ingest")
    fractions = [(i + 1) / len(samples) for i in range(len(samples))]
    cdf.plot(samples, fractions, color="#3a6ea5")
    for q, name in ((alarm["p50"], "p50"), (alarm["p99"], "p99")):
        cdf.axvline(q, color="#888", linestyle=":")
        cdf.annotate(f"{name} {q:.1f} ms", (q, 0.05), rotation=90, va="bottom", ha="right")
    cdf.axvline(alarm["target_p99_ms"], color="#c0392b", linestyle="--")
    cdf.annotate("target p99", (alarm["target_p99_ms"], 0.5), rotation=90, ha="right",
                 color="#c0392b")  # fmt: skip
    cdf.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if t <= max(samples) * 1.5]
    cdf.set_xticks(ticks, [str(t) for t in ticks])
    cdf.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    cdf.set_xlabel("latency (ms, log scale)")
    cdf.set_ylabel("share of alarms")
    cdf.set_title("cumulative distribution")
    fig.tight_layout()
    fig.savefig(out)


def main() -> None:
    result = orjson.loads(Path(sys.argv[1]).read_bytes())
    plot(result, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
