"""``make bench``: run every benchmark module in order.

A module that raises is reported and the others still run; the exit status is non-zero at
the end if any failed. Each module prints its own ``BENCH {json}`` lines.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable


def _modules() -> list[tuple[str, Callable[[], Callable[[], None]]]]:
    # Imported lazily, so that a module that fails to import is reported like any failure.
    def engine() -> Callable[[], None]:
        from benchmarks import bench_engine

        return bench_engine.main

    def workbook() -> Callable[[], None]:
        from benchmarks import bench_workbook

        return bench_workbook.main

    def cycle() -> Callable[[], None]:
        from benchmarks import bench_cycle

        return bench_cycle.main

    def family(module: str) -> Callable[[], Callable[[], None]]:
        def load() -> Callable[[], None]:
            import importlib

            return importlib.import_module(f"benchmarks.{module}").main

        return load

    return [("bench_engine", engine), ("bench_workbook", workbook), ("bench_cycle", cycle)] + [
        (name, family(name)) for name in ("bench_docs", "bench_preferences", "bench_roles")
    ]


def main() -> int:
    failed: list[str] = []
    for name, load in _modules():
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            load()()
        except (Exception, SystemExit) as exc:
            if isinstance(exc, SystemExit) and exc.code in (None, 0):
                pass
            else:
                failed.append(name)
                print(f"== {name} FAILED after {time.perf_counter() - started:.1f} s", flush=True)
                traceback.print_exc()
                continue
        print(f"== {name} done in {time.perf_counter() - started:.1f} s", flush=True)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
