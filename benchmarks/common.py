"""What every benchmark module shares: the BENCH line, BENCH_SCALE, peak memory."""

from __future__ import annotations

import json
import os
import resource
import sys


def scale() -> float:
    """``BENCH_SCALE`` (default 1) scales every item count, e.g. 0.1 for a quick look."""
    raw = os.environ.get("BENCH_SCALE", "").strip()
    if not raw:
        return 1.0
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"BENCH_SCALE={raw!r} is not a number") from None
    if value <= 0:
        raise SystemExit(f"BENCH_SCALE must be > 0, got {value}")
    return value


def scaled(base: int) -> int:
    return max(1, round(base * scale()))


def peak_rss_mib() -> float:
    """This process's peak resident set so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def bench_line(name: str, unit: str, measured: float | None, ideal: float, digits: int = 3) -> None:
    """The one machine-readable line a benchmark ends with."""
    value = None if measured is None else round(measured, digits)
    ratio = None if measured is None or not ideal else round(measured / ideal, 3)
    print(
        "BENCH "
        + json.dumps(
            {"name": name, "unit": unit, "measured": value, "ideal": ideal, "ratio": ratio}
        ),
        flush=True,
    )
