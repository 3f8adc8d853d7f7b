"""The progress reporter of long commands: rate and ETA, live in a terminal, lines elsewhere."""

import io

from batch_pipelines.progress import ProgressReporter, RateClock, format_duration, plain_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_counts_only_what_this_run_did_and_the_eta_follows_from_it():
    clock = RateClock(started_at=0.0, baseline=40)
    assert clock.rate(40, now=10.0) is None and clock.eta_seconds(40, 100, now=10.0) is None
    assert clock.rate(60, now=10.0) == 2.0
    assert clock.eta_seconds(60, 100, now=10.0) == 20.0


def test_durations_and_plain_lines_read_like_a_person_wrote_them():
    assert [format_duration(s) for s in (None, 42, 185, 3725)] == ["-", "42s", "3m05s", "1h02m"]
    assert (
        plain_line("summarization", 30, 120, 2.5, 36.0, "items", "cost this run 0.01")
        == "  summarization: 30/120 items (25%), 2.5 items/s, ETA 36s, cost this run 0.01"
    )


def test_plain_lines_are_throttled_and_the_last_state_is_always_printed():
    clock, out = FakeClock(), io.StringIO()
    with ProgressReporter(stream=out, live=False, clock=clock, plain_every_seconds=1.0) as p:
        for done in range(1, 11):
            clock.now += 0.25
            p.update("ocr", done, 10, baseline=0)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("  ocr: 1/10 items (10%), 4.0 items/s, ETA 2s")
    assert 2 <= len(lines) <= 5  # one a second, not one per update
    assert lines[-1].startswith("  ocr: 10/10 items (100%)")


def test_a_terminal_gets_a_live_bar_with_rate_and_eta():
    clock, out = FakeClock(), io.StringIO()
    with ProgressReporter(stream=out, live=True, clock=clock) as p:
        clock.now += 5
        p.update("translation", 10, 40, baseline=0)
    shown = out.getvalue()
    assert "translation" in shown and "10/40" in shown
    assert "2.0 items/s" in shown and "ETA 15s" in shown


def test_a_disabled_reporter_prints_nothing():
    out = io.StringIO()
    with ProgressReporter(stream=out, enabled=False) as p:
        p.update("ocr", 1, 2)
    assert out.getvalue() == ""


def test_a_task_that_starts_after_another_finished_is_timed_from_then():
    clock, out = FakeClock(), io.StringIO()
    with ProgressReporter(stream=out, live=False, clock=clock) as p:
        clock.now += 100
        p.update("ocr", 10, 10, baseline=0)
        clock.now += 5
        p.update("summarization", 10, 10, baseline=0)
    assert "summarization: 10/10 items (100%), 2.0 items/s" in out.getvalue()
