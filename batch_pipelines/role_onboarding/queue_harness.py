"""Run a role batch through Dagster's real run queue: a daemon, its sensor, queued runs.

The demo and the concurrency test need what production has: ``dagster-daemon`` evaluating
the ``role_batch_submissions`` sensor, the QueuedRunCoordinator dequeuing runs under the
tag concurrency limit of dagster.yaml, and one run worker process per role. This module
starts a daemon on an instance folder of its own (a copy of the project's dagster.yaml),
submits a batch to the store, follows its status while sampling how many role runs are
executing, retries the failed roles and stops the daemon whatever happens.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from batch_pipelines.role_onboarding.service import (
    batch_status,
    retry_failed,
    role_run_limit_of,
    submit_batch,
)
from batch_pipelines.role_onboarding.status import (
    BATCH_TAG,
    CONCURRENCY_GROUP,
    CONCURRENCY_TAG_KEY,
    BatchStatusView,
    peak_concurrency,
)
from batch_pipelines.role_onboarding.store import RoleOnboardingStore
from batch_pipelines.role_onboarding.submission import ValidatedSubmission
from batch_pipelines.store.batch_store import BatchStore

# The family alone (see code_location.py): less to import in every run worker.
CODE_LOCATION_MODULE = "batch_pipelines.role_onboarding.code_location"
RUNNING_STATUSES = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


class QueueTimeout(RuntimeError):
    """The batch did not reach the awaited state in time (the daemon log says why)."""


def project_dagster_yaml(instance: dg.DagsterInstance | None = None) -> Path:
    """The instance configuration to copy: the given instance's own file when it has one
    (``make`` copies the project's there), else the project's embedded dagster.yaml."""
    if instance is not None and not instance.is_ephemeral:
        candidate = Path(instance.root_directory) / "dagster.yaml"
        if candidate.is_file():
            return candidate
    from batch_pipelines.instance import INSTANCE_FILES

    return INSTANCE_FILES["embedded"]


def write_instance_config(
    source: Path,
    home: Path,
    *,
    role_run_limit: int | None = None,
    dequeue_interval_seconds: int = 1,
    run_monitoring: dict[str, int] | None = None,
) -> Path:
    """Copy ``source`` to ``home/dagster.yaml``, dequeuing every ``dequeue_interval_seconds``
    (the default 5 s would make a demo of short runs mostly waiting) with threads, and,
    when given, with another limit for role runs (the test uses a small one) and other
    ``run_monitoring`` timings (the test of a killed daemon cannot wait the production
    intervals). The tag concurrency limits are the source's."""
    config: dict[str, Any] = yaml.safe_load(source.read_text()) or {}
    coordinator = config.setdefault(
        "run_coordinator",
        {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"},
    )
    coordinator_config = coordinator.setdefault("config", {})
    coordinator_config["dequeue_interval_seconds"] = dequeue_interval_seconds
    # Launching a run waits until its worker process has loaded the code; one at a time,
    # those waits alone would keep fewer runs executing than the limit allows.
    coordinator_config.setdefault("dequeue_use_threads", True)
    coordinator_config.setdefault("dequeue_num_workers", 8)
    # The sensor creates one run per role; in parallel, a 20-role batch is queued sooner.
    config.setdefault("sensors", {"use_threads": True, "num_workers": 2, "num_submit_workers": 4})
    if role_run_limit is not None:
        limits = (
            config.setdefault("concurrency", {})
            .setdefault("runs", {})
            .setdefault("tag_concurrency_limits", [])
        )
        limits[:] = [
            entry
            for entry in limits
            if not (
                entry.get("key") == CONCURRENCY_TAG_KEY and entry.get("value") == CONCURRENCY_GROUP
            )
        ]
        limits.append(
            {"key": CONCURRENCY_TAG_KEY, "value": CONCURRENCY_GROUP, "limit": role_run_limit}
        )
    if run_monitoring:
        config.setdefault("run_monitoring", {}).update(run_monitoring)
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target


class Daemon:
    """``dagster-daemon run`` on the code location, in its own process group so that
    stopping it also stops its code server and run workers."""

    def __init__(
        self, home: Path, workdir: Path, env: dict[str, str], workspace: Path | None = None
    ):
        # Dagster insists on an absolute DAGSTER_HOME.
        self.home = Path(home).resolve()
        self.workdir = workdir
        self.env = env
        self.log_path = workdir / "dagster-daemon.log"
        self.process: subprocess.Popen[bytes] | None = None
        # With the project's workspace (run from its folder) the sensors and runs have the
        # very origins `make dev` has, so it shows them and continues the sensors' cursors.
        self.workspace = workspace

    def __enter__(self) -> Daemon:
        env = {k: v for k, v in os.environ.items() if k != "MODELS_BASE_URL"}
        env.update(self.env)
        env["DAGSTER_HOME"] = str(self.home)
        # Appended: a daemon restarted after a kill keeps the first one's log.
        self._log = self.log_path.open("ab")
        target = ["-w", str(self.workspace)] if self.workspace else ["-m", CODE_LOCATION_MODULE]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster._daemon", "run", *target],
            cwd=self.workspace.parent if self.workspace else self.workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        atexit.register(self.stop)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the daemon's whole process group (daemon, code server, run workers), as
        an out-of-memory killer or a pulled plug would: nothing gets to clean up."""
        proc = self.process
        if proc is None:
            return
        self.process = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self._log.close()
        atexit.unregister(self.stop)

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        self.process = None
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._log.close()
        atexit.unregister(self.stop)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no daemon log)"


@dataclass
class QueueRunResult:
    batch_id: str
    limit: int
    submission: dict[str, Any]
    retry: dict[str, Any] | None
    states: list[str] = field(default_factory=list)
    sampled_peak: int = 0
    recorded_peak: int = 0
    step_peak: int = 0  # role steps (activities) at once, from the step events
    final: BatchStatusView | None = None
    seconds: float = 0.0


def role_run_intervals(instance: dg.DagsterInstance, batch_id: str) -> list[tuple[float, float]]:
    """(start, end) of every role run of the batch that ran, from the run records."""
    records = instance.get_run_records(dg.RunsFilter(tags={BATCH_TAG: batch_id}))
    return [
        (r.start_time, r.end_time)
        for r in records
        if r.start_time is not None and r.end_time is not None
    ]


def role_step_intervals(instance: dg.DagsterInstance, batch_id: str) -> list[tuple[float, float]]:
    """(start, end) of every role step of the batch (what the activity pool limits), from
    the step events of its runs: a run waiting for a pool slot has started, its step not."""
    intervals = []
    for record in instance.get_run_records(dg.RunsFilter(tags={BATCH_TAG: batch_id})):
        starts, ends = [], []
        for event in instance.all_logs(
            record.dagster_run.run_id,
            of_type={
                dg.DagsterEventType.STEP_START,
                dg.DagsterEventType.STEP_SUCCESS,
                dg.DagsterEventType.STEP_FAILURE,
            },
        ):
            kind = event.dagster_event.event_type if event.dagster_event else None
            (starts if kind == dg.DagsterEventType.STEP_START else ends).append(event.timestamp)
        intervals.extend(zip(sorted(starts), sorted(ends), strict=False))
    return intervals


def run_batch_through_queue(
    directory: Path,
    submission: ValidatedSubmission,
    *,
    source_config: Path,
    failing_roles: list[str],
    model_latency_ms: int = 300,
    role_run_limit: int | None = None,
    activity_limit: int | None = None,
    retry: bool = True,
    timeout_seconds: float = 240.0,
    echo: Callable[[str], None] = print,
    poll_seconds: float = 0.5,
    project: tuple[Path, str, Path] | None = None,
) -> QueueRunResult:
    """Submit ``submission``, follow it to a settled state through the real queue, retry
    its failed roles (if ``retry``) and follow again; the daemon is always stopped.
    ``activity_limit`` is given to the daemon as ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES.

    By default the instance and store are new ones under ``directory``; ``project`` =
    (DAGSTER_HOME, store URL, workspace.yaml) runs on the project's own instead, as is
    (``source_config`` and ``role_run_limit`` are then not applied), so `make dev` shows
    the batch and its runs afterwards."""
    started = time.monotonic()
    workspace = None
    if project is not None:
        home, store_url, workspace = project
    else:
        home = directory / "dagster_home"
        write_instance_config(source_config, home, role_run_limit=role_run_limit)
        store_url = f"sqlite:///{directory / 'batch_store.db'}"
    base_store = BatchStore(store_url)
    store = RoleOnboardingStore(base_store)
    env = {
        "BATCH_PIPELINES_DATABASE_URL": store_url,
        "ROLE_ONBOARDING_SIMULATED_ASSESSMENT_FAILURES": ",".join(failing_roles),
        "ROLE_ONBOARDING_SIMULATED_MODEL_LATENCY_MS": str(model_latency_ms),
    }
    if activity_limit is not None:
        env["ROLE_ONBOARDING_MAX_CONCURRENT_ACTIVITIES"] = str(activity_limit)
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        limit = role_run_limit_of(instance)
        with Daemon(home, directory, env, workspace) as daemon:
            submitted = submit_batch(
                store,
                submission,
                enabled=True,
                ttl=timedelta(hours=24),
                role_seconds=10,
                concurrency=limit,
            )
            batch_id = submitted.batch.batch_id
            result = QueueRunResult(
                batch_id=batch_id, limit=limit, submission=submitted.response, retry=None
            )
            echo(
                f"  {submitted.response['message']} as {batch_id} (run queue limit for role runs: {limit})"
            )

            def follow(until: tuple[str, ...]) -> BatchStatusView:
                deadline = time.monotonic() + timeout_seconds
                while True:
                    view = batch_status(instance, store, batch_id)
                    state = str(view.view.state)
                    running = instance.get_runs_count(
                        dg.RunsFilter(
                            statuses=RUNNING_STATUSES, tags={CONCURRENCY_TAG_KEY: CONCURRENCY_GROUP}
                        )
                    )
                    if running > result.sampled_peak:
                        result.sampled_peak = running
                    if not result.states or result.states[-1] != state:
                        result.states.append(state)
                        v = view.view
                        echo(
                            f"    {time.monotonic() - started:5.1f}s  state {state:<11} queued {v.queued:>2}  "
                            f"running {v.in_progress:>2}  completed {v.completed:>2}  failed {v.failed:>2}"
                        )
                    if state in until:
                        return view
                    if not daemon.alive():
                        raise QueueTimeout(
                            f"the daemon exited; its log ends with:\n{daemon.log_tail()}"
                        )
                    if time.monotonic() > deadline:
                        raise QueueTimeout(
                            f"{batch_id} still {state} after {timeout_seconds:.0f}s "
                            f"({view.view.to_dict()}); the daemon log ends with:\n{daemon.log_tail()}"
                        )
                    time.sleep(poll_seconds)

            settled = follow(("completed", "partial"))
            if retry and settled.view.failed:
                failed = [r for r in settled.roles if r.status == "failed"]
                for role in failed:
                    echo(f"    failed: {role.role_name} ({role.workflow_id}): {role.error}")
                result.retry = retry_failed(instance, store, batch_id)
                echo(
                    f"  retry failed: {result.retry['message']} -> {result.retry['new_workflow_ids']}"
                )
                settled = follow(("completed", "partial"))
            result.final = settled
            result.recorded_peak = peak_concurrency(role_run_intervals(instance, batch_id))
            result.step_peak = peak_concurrency(role_step_intervals(instance, batch_id))
        result.seconds = time.monotonic() - started
        return result
    finally:
        instance.dispose()
        base_store.dispose()
