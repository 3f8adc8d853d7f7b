"""Which document jobs need a run, and which lost theirs: pure decisions under the sensor.

A job is RUNNING from the moment it is started or resumed; each start or resume bumps its
generation, and the launcher asks for exactly one run per (job, generation) - the run key
makes a second request a no-op. When every run of the current generation has ended and the
job is still RUNNING, the run died without settling it (retries used up, a run cancelled):
the job is marked FAILED with the reason, so it can be resumed from its last checkpoint.

A run whose worker was killed stays STARTED in Dagster's eyes (the default run launcher
cannot check a worker's health). The runner's claim is its heartbeat: renewed every few
seconds, released between phases. A claim left to expire for long means the worker died;
the launcher then reports the run failed (which lets Dagster's run retries resume it) and
marks the job FAILED.

No run is launched for work that needs none: a job held by a live worker outside Dagster
(`docs ... --run`, which records its work on the assets itself) is left to that worker - and
not failed for a run of its generation that ended meanwhile, having found the claim taken; and
a RUNNING job whose items are all settled is completed instead of given a run that would
do nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Dagster run statuses as strings (no Dagster import in pure logic).
ACTIVE_RUN_STATUSES = frozenset(
    {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "MANAGED", "CANCELING"}
)


# How long a runner's claim may stay expired before its run counts as dead.
DEAD_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class RunningJob:
    key: str
    pipeline: str
    generation: int
    # Seconds since the claim of the runner holding the job expired; None when no runner
    # holds it or its claim is live.
    claim_expired_seconds: float | None = None
    # A live runner outside Dagster holds the job (`docs ... --run`): it needs no run.
    claimed_elsewhere: bool = False
    # Every item is settled (done or failed in the pipeline): nothing is left for a run.
    nothing_left: bool = False


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


@dataclass(frozen=True)
class Decisions:
    to_launch: list[Launch]
    to_fail: list[tuple[str, str]]  # (job key, reason)
    dead_runs: list[tuple[str, str]]  # (run id, reason): runs to report failed
    to_complete: list[str] = field(default_factory=list)  # job keys with nothing left to do


def launch_decisions(
    running: Iterable[RunningJob],
    runs: Mapping[str, Sequence[RunSeen]],
    dead_after_seconds: float = DEAD_AFTER_SECONDS,
) -> Decisions:
    """What to do about the RUNNING jobs: runs to launch, jobs to fail, dead runs to report.

    ``runs`` maps a run key (job key and generation) to the runs seen for it, newest first.
    """
    to_launch: list[Launch] = []
    to_fail: list[tuple[str, str]] = []
    dead_runs: list[tuple[str, str]] = []
    to_complete: list[str] = []
    for job in running:
        seen = runs.get(run_key(job.key, job.generation), ())
        active = [r for r in seen if r.status in ACTIVE_RUN_STATUSES]
        if job.nothing_left and not active and not job.claimed_elsewhere:
            # Settled but never marked so (its worker died between the last checkpoint and
            # the end): a run would do nothing; the job is completed instead.
            to_complete.append(job.key)
        elif job.claimed_elsewhere and not active:
            # Worked outside Dagster right now; its worker settles it. A run that ended
            # meanwhile (it found the claim taken) says nothing about that live worker.
            continue
        elif not seen:
            to_launch.append(Launch(job.key, job.pipeline, job.generation))
        elif (
            active
            and job.claim_expired_seconds is not None
            and job.claim_expired_seconds > dead_after_seconds
        ):
            reason = (
                f"the worker of run {active[0].run_id} stopped renewing its claim "
                f"{job.claim_expired_seconds:.0f} s ago (it died); resume the job to go on"
            )
            dead_runs.extend((r.run_id, reason) for r in active)
            to_fail.append((job.key, reason))
        elif not active:
            latest = seen[0]
            to_fail.append(
                (
                    job.key,
                    f"run {latest.run_id} ended {latest.status} without settling the job; resume it to go on",
                )
            )
    return Decisions(to_launch, to_fail, dead_runs, to_complete)
