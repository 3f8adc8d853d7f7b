"""Progress of long command-line work: a live bar with rate and ETA in a terminal, plain
lines when the output goes to a file or a pipe.

One reporter for every long command (``docs submit --run``, ``docs resume --run``, ``roles
status --watch``), so they all show the same columns and a log file gets readable lines
instead of a bar's control codes. Rate and ETA are computed here, by ``RateClock``, in both
modes: a terminal and a log say the same thing.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

# Plain lines for one task at most this often (the last state is always printed).
PLAIN_LINE_SECONDS = 1.0


@dataclass
class RateClock:
    """Items per second since a task was first seen, and the time left at that rate.

    ``baseline`` is what was already done when this process started (a resumed job's
    earlier items): those items say nothing about how fast this run goes.
    """

    started_at: float
    baseline: int = 0

    def rate(self, done: int, now: float) -> float | None:
        elapsed = now - self.started_at
        processed = done - self.baseline
        if elapsed <= 0 or processed <= 0:
            return None
        return processed / elapsed

    def eta_seconds(self, done: int, total: int | None, now: float) -> float | None:
        rate = self.rate(done, now)
        if total is None or rate is None:
            return None
        return max(total - done, 0) / rate


def format_rate(rate: float | None, unit: str) -> str:
    return f"- {unit}/s" if rate is None else f"{rate:.1f} {unit}/s"


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def plain_line(
    name: str,
    done: int,
    total: int | None,
    rate: float | None,
    eta: float | None,
    unit: str,
    detail: str = "",
) -> str:
    """One progress line as printed when the output is not a terminal."""
    count = f"{done}/{total}" if total is not None else str(done)
    percent = f" ({100.0 * done / total:.0f}%)" if total else ""
    tail = f", {detail}" if detail else ""
    return (
        f"  {name}: {count} {unit}{percent}, {format_rate(rate, unit)}, "
        f"ETA {format_duration(eta)}{tail}"
    )


@dataclass
class _Task:
    clock: RateClock
    done: int = 0
    total: int | None = None
    detail: str = ""
    rich_id: Any = None
    printed_at: float | None = None
    printed_state: tuple | None = None


class ProgressReporter:
    """Report progress of named tasks (a document job's phases, a batch's roles).

    Use as a context manager; ``update`` as often as wanted. ``live=None`` decides from the
    stream: a rich progress display on a terminal, throttled plain lines otherwise.
    ``enabled=False`` reports nothing (a command asked for --json).
    """

    def __init__(
        self,
        *,
        unit: str = "items",
        stream: IO[str] | None = None,
        live: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        plain_every_seconds: float = PLAIN_LINE_SECONDS,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.unit = unit
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.plain_every_seconds = plain_every_seconds
        self._tasks: dict[str, _Task] = {}
        # When a task's clock starts: the reporter's start, or the moment the latest task
        # finished (a job's phases run one after the other).
        self._started_at = clock()
        self._live = None
        if not enabled:
            live = False
        elif live is None:
            live = bool(getattr(self.stream, "isatty", lambda: False)())
        if live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._live = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA {task.fields[eta]}"),
                TextColumn("{task.fields[detail]}"),
                console=Console(file=self.stream, force_terminal=True),
                refresh_per_second=4,
            )

    @property
    def live(self) -> bool:
        return self._live is not None

    def __enter__(self) -> ProgressReporter:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the live display, or print each task's last state if not printed yet."""
        if self._live is not None:
            self._live.stop()
            return
        for name, task in self._tasks.items():
            if task.printed_state != (task.done, task.total, task.detail):
                self._print(name, task, self.clock())

    def update(
        self,
        name: str,
        done: int,
        total: int | None = None,
        *,
        baseline: int | None = None,
        detail: str = "",
    ) -> None:
        """``done`` of ``total`` for task ``name``; ``baseline`` is what was done before
        this process started (default: the first value seen, from the reporter's start)."""
        if not self.enabled:
            return
        now = self.clock()
        task = self._tasks.get(name)
        if task is None:
            start = baseline if baseline is not None else done
            task = self._tasks[name] = _Task(RateClock(self._started_at, start))
        task.done, task.total, task.detail = done, total, detail
        finished = total is not None and done >= total
        if finished:
            self._started_at = max(self._started_at, now)
        rate = task.clock.rate(done, now)
        eta = task.clock.eta_seconds(done, total, now)
        if self._live is not None:
            fields = {
                "rate": format_rate(rate, self.unit),
                "eta": format_duration(eta),
                "detail": detail,
            }
            if task.rich_id is None:
                task.rich_id = self._live.add_task(name, total=total, completed=done, **fields)
            else:
                self._live.update(task.rich_id, total=total, completed=done, **fields)
            return
        due = task.printed_at is None or now - task.printed_at >= self.plain_every_seconds
        if (due or finished) and task.printed_state != (done, total, detail):
            self._print(name, task, now)

    def _print(self, name: str, task: _Task, now: float) -> None:
        rate = task.clock.rate(task.done, now)
        eta = task.clock.eta_seconds(task.done, task.total, now)
        line = plain_line(name, task.done, task.total, rate, eta, self.unit, task.detail)
        self.stream.write(line + "\n")
        self.stream.flush()
        task.printed_at = now
        task.printed_state = (task.done, task.total, task.detail)
