"""Turn the states of a batch's jobs into the batch's status, by one pure function.

Reconciliation exists so that every place that needs a batch status (the engine after a
poll, the Dagster asset's metadata, the asset check, the CLI) computes it the same way from
the same facts, instead of each keeping a counter that drifts. The store feeds it plain
views of configurations and jobs; the result is stored and shown, never edited by hand.

The rules follow the Risk Modeler batch design (seed 003) and are evaluated over the
non-skipped configurations and non-skipped jobs only, in this order:

1. no non-skipped jobs and no non-skipped configurations -> COMPLETED (nothing to do);
2. no non-skipped jobs -> ACTIVE (work exists but nothing has been submitted yet), unless
   every configuration already has a FINISHED job (rule 7);
3. any non-terminal job -> ACTIVE (never settle a batch while something still runs);
4. every job CANCELLED -> CANCELLED;
5. any ERROR -> ERROR (a submission failure outranks a failed run: it is ours to fix);
6. any FAILED -> FAILED;
7. every configuration has at least one FINISHED job -> COMPLETED;
8. otherwise ACTIVE (e.g. some jobs cancelled, the rest finished, configurations left
   without a FINISHED job: someone has to resubmit or cancel them).

Skipped jobs are history (a resubmission marks the old job skipped), so they never count
toward a status (rules 3-6 speak of non-skipped jobs only). Rule 7 is the seed's own words,
"all job configurations have at least one FINISHED job", which do not say non-skipped: a
configuration whose FINISHED job was later superseded by a resubmission (its entity was
gone, or it was redone by hand) has had its work done once, so that job still fulfils it. A
superseding job that fails or still runs decides the status by rules 3-6 first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from batch_pipelines.core.statuses import BatchStatus, JobStatus

# Key under which skipped jobs are counted in ``job_status_counts``. It is not a JobStatus:
# a skipped job keeps its real status in history, but for the batch it no longer counts.
SKIPPED_KEY = "SKIPPED"


@dataclass(frozen=True)
class ConfigurationView:
    """The one fact reconciliation needs about a job configuration: is it still wanted."""

    id: int
    skipped: bool = False


@dataclass(frozen=True)
class JobView:
    """The facts reconciliation needs about one job (one attempt at a configuration).

    ``status`` accepts the plain string a store row holds and is normalised to JobStatus
    here, so an unknown word fails loudly at the boundary instead of deep in a rule.
    """

    id: int
    job_configuration_id: int
    status: JobStatus
    skipped: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.status, JobStatus):
            object.__setattr__(self, "status", JobStatus(self.status))


@dataclass(frozen=True)
class ReconciliationSummary:
    """The counts behind a reconciliation, so a status can always be explained.

    ``job_status_counts`` holds only statuses that occur (non-skipped jobs under their
    status, skipped jobs under ``"SKIPPED"``); its values always sum to ``total_jobs``.
    Id lists are sorted so that two reconciliations of the same facts compare equal.
    """

    total_configurations: int
    non_skipped_configurations: int
    fulfilled_configurations: int
    unfulfilled_configurations: int
    fulfilled_configuration_ids: list[int]
    unfulfilled_configuration_ids: list[int]
    total_jobs: int
    non_skipped_jobs: int
    job_status_counts: dict[str, int]
    failed_job_ids: list[int]
    cancelled_job_ids: list[int]
    error_job_ids: list[int]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (copies, so callers cannot mutate the summary)."""
        return {
            "total_configurations": self.total_configurations,
            "non_skipped_configurations": self.non_skipped_configurations,
            "fulfilled_configurations": self.fulfilled_configurations,
            "unfulfilled_configurations": self.unfulfilled_configurations,
            "fulfilled_configuration_ids": list(self.fulfilled_configuration_ids),
            "unfulfilled_configuration_ids": list(self.unfulfilled_configuration_ids),
            "total_jobs": self.total_jobs,
            "non_skipped_jobs": self.non_skipped_jobs,
            "job_status_counts": dict(self.job_status_counts),
            "failed_job_ids": list(self.failed_job_ids),
            "cancelled_job_ids": list(self.cancelled_job_ids),
            "error_job_ids": list(self.error_job_ids),
        }


@dataclass(frozen=True)
class Reconciliation:
    """A batch status together with the counts and the sentence that justify it."""

    status: BatchStatus
    summary: ReconciliationSummary
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "reason": self.reason,
            "summary": self.summary.to_dict(),
        }


def _jobs_word(n: int) -> str:
    return "job" if n == 1 else "jobs"


def _configs_word(n: int) -> str:
    return "configuration" if n == 1 else "configurations"


def reconcile(
    configurations: Iterable[ConfigurationView], jobs: Iterable[JobView]
) -> Reconciliation:
    """Compute a batch's status from its configurations and jobs (rules in the module doc).

    Duplicate configuration ids or job ids raise ValueError: they mean the caller joined
    rows wrongly, and counting a job twice would silently change the outcome.
    """
    configs = list(configurations)
    all_jobs = list(jobs)
    _reject_duplicates("configuration", [c.id for c in configs])
    _reject_duplicates("job", [j.id for j in all_jobs])

    live_configs = [c for c in configs if not c.skipped]
    live_jobs = [j for j in all_jobs if not j.skipped]

    # Any FINISHED job, superseded (skipped) or not, fulfils its configuration (rule 7).
    finished_config_ids = {
        j.job_configuration_id for j in all_jobs if j.status is JobStatus.FINISHED
    }
    live_config_ids = sorted(c.id for c in live_configs)
    fulfilled = [cid for cid in live_config_ids if cid in finished_config_ids]
    unfulfilled = [cid for cid in live_config_ids if cid not in finished_config_ids]

    status_counter: Counter[JobStatus] = Counter(j.status for j in live_jobs)
    # Present statuses in their lifecycle order (the enum's order), then SKIPPED, so the
    # dict reads naturally in the UI and is identical for identical facts.
    counts: dict[str, int] = {str(s): status_counter[s] for s in JobStatus if status_counter[s]}
    skipped_jobs = len(all_jobs) - len(live_jobs)
    if skipped_jobs:
        counts[SKIPPED_KEY] = skipped_jobs

    def ids_with(status: JobStatus) -> list[int]:
        return sorted(j.id for j in live_jobs if j.status is status)

    summary = ReconciliationSummary(
        total_configurations=len(configs),
        non_skipped_configurations=len(live_configs),
        fulfilled_configurations=len(fulfilled),
        unfulfilled_configurations=len(unfulfilled),
        fulfilled_configuration_ids=fulfilled,
        unfulfilled_configuration_ids=unfulfilled,
        total_jobs=len(all_jobs),
        non_skipped_jobs=len(live_jobs),
        job_status_counts=counts,
        failed_job_ids=ids_with(JobStatus.FAILED),
        cancelled_job_ids=ids_with(JobStatus.CANCELLED),
        error_job_ids=ids_with(JobStatus.ERROR),
    )
    status, reason = _decide(summary, status_counter)
    return Reconciliation(status=status, summary=summary, reason=reason)


def _decide(summary: ReconciliationSummary, counts: Counter[JobStatus]) -> tuple[BatchStatus, str]:
    n_jobs = summary.non_skipped_jobs
    n_configs = summary.non_skipped_configurations
    of_jobs = f"of {n_jobs} {_jobs_word(n_jobs)}"

    if n_jobs == 0 and n_configs == 0:
        return BatchStatus.COMPLETED, "nothing to run: no jobs and no configurations"
    if n_jobs == 0 and summary.unfulfilled_configurations == 0:
        return BatchStatus.COMPLETED, _all_fulfilled(n_configs)
    if n_jobs == 0:
        return (
            BatchStatus.ACTIVE,
            f"{n_configs} {_configs_word(n_configs)} waiting, no jobs submitted yet",
        )
    in_flight = sum(n for s, n in counts.items() if not s.is_terminal)
    if in_flight:
        return BatchStatus.ACTIVE, f"{in_flight} {of_jobs} still in progress"
    if counts[JobStatus.CANCELLED] == n_jobs:
        return BatchStatus.CANCELLED, f"all {n_jobs} {_jobs_word(n_jobs)} CANCELLED"
    if counts[JobStatus.ERROR]:
        return BatchStatus.ERROR, f"{counts[JobStatus.ERROR]} {of_jobs} ERROR"
    if counts[JobStatus.FAILED]:
        return BatchStatus.FAILED, f"{counts[JobStatus.FAILED]} {of_jobs} FAILED"
    if summary.unfulfilled_configurations == 0:
        return BatchStatus.COMPLETED, _all_fulfilled(n_configs)
    missing = summary.unfulfilled_configurations
    return (
        BatchStatus.ACTIVE,
        f"{missing} of {n_configs} {_configs_word(n_configs)} have no FINISHED job "
        "and nothing is running",
    )


def _all_fulfilled(n_configs: int) -> str:
    if n_configs == 1:
        return "the one configuration has a FINISHED job"
    return f"all {n_configs} {_configs_word(n_configs)} have a FINISHED job"


def _reject_duplicates(what: str, ids: list[int]) -> None:
    dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dupes:
        raise ValueError(f"duplicate {what} ids passed to reconcile: {dupes}")
