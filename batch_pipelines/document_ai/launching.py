"""Which document jobs need a run, and which lost theirs: pure decisions under the sensor.

A job is RUNNING from the moment it is started or resumed; each start or resume bumps its
generation, and the launcher asks for exactly one run per (job, generation) - the run key
makes a second request a no-op. When every run of the current generation has ended and the
job is still RUNNING, the run died without settling it (a killed worker, retries used up):
the job is marked FAILED with the reason, so it can be resumed from its last checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Dagster run statuses as strings (no Dagster import in pure logic).
ACTIVE_RUN_STATUSES = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "MANAGED", "CANCELING"})


@dataclass(frozen=True)
class RunningJob:
    key: str
    pipeline: str
    generation: int


@dataclass(frozen=True)
class RunSeen:
    run_id: str
    status: str


@dataclass(frozen=True)
class Launch:
    key: str
    pipeline: str
    generation: int

    @property
    def run_key(self) -> str:
        return run_key(self.key, self.generation)


def run_key(job_key: str, generation: int) -> str:
    return f"{job_key}#{generation}"


def launch_decisions(
    running: Iterable[RunningJob], runs: Mapping[str, Sequence[RunSeen]]
) -> tuple[list[Launch], list[tuple[str, str]]]:
    """(runs to launch, jobs to mark FAILED with the reason) for the RUNNING jobs.

    ``runs`` maps a run key (job key and generation) to the runs seen for it, newest first.
    """
    to_launch: list[Launch] = []
    to_fail: list[tuple[str, str]] = []
    for job in running:
        seen = runs.get(run_key(job.key, job.generation), ())
        if not seen:
            to_launch.append(Launch(job.key, job.pipeline, job.generation))
        elif not any(r.status in ACTIVE_RUN_STATUSES for r in seen):
            latest = seen[0]
            to_fail.append(
                (job.key, f"run {latest.run_id} ended {latest.status} without settling the job; resume it to go on")
            )
    return to_launch, to_fail
