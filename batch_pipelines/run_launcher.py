"""Dagster's default run launcher, able to tell run monitoring that a run worker is gone.

Runs are launched through the code server (``DefaultRunLauncher``): the server starts one
worker process per run. When the daemon's process group is killed, the code server and every
worker die with it, but their runs stay STARTED in the run storage; the run queue counts them
as in progress, so they hold their concurrency slots and the runs queued behind them never
start. Run monitoring (``run_monitoring`` in dagster.yaml) would fail such runs, but only
for a launcher that can check a worker's health, and the default launcher cannot.

This launcher can: it asks the code server that started the run (the address the default
launcher records on the run) whether the run is still executing there. A server that no
longer answers, or answers without the run, means the worker is gone; monitoring then fails
the run (and the run retries of dagster.yaml launch it again), which frees its slots. A
server that is only slow to answer is not taken as a dead worker.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher
from dagster._core.storage.tags import GRPC_INFO_TAG

# Seconds to wait for the code server's answer; a slower answer counts as "still running".
HEALTH_CHECK_TIMEOUT_SECONDS = 10


def worker_status_from_answer(run_id: str, current_runs: list[str] | None) -> WorkerStatus:
    """The worker's status from the code server's list of executing runs (None: the server
    is gone). Pure, so the rule is tested without a server."""
    if current_runs is None:
        return WorkerStatus.NOT_FOUND
    return WorkerStatus.RUNNING if run_id in current_runs else WorkerStatus.NOT_FOUND


class MonitoredRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` plus a worker health check for run monitoring."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        import grpc
        from dagster._core.errors import DagsterUserCodeUnreachableError
        from dagster._grpc.client import DagsterGrpcClient
        from dagster._grpc.types import GetCurrentRunsResult
        from dagster._serdes import deserialize_value

        raw = run.tags.get(GRPC_INFO_TAG)
        if not raw:
            # Not launched by a code server of ours (yet): nothing to ask, assume it runs.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no code server recorded")
        info: dict[str, Any] = json.loads(raw)
        client = DagsterGrpcClient(
            port=info.get("port"),
            socket=info.get("socket"),
            host=info.get("host", "localhost"),
            use_ssl=bool(info.get("use_ssl", False)),
        )
        try:
            response = client._query(  # noqa: SLF001 - get_current_runs has no timeout argument
                "GetCurrentRuns",
                _empty_request_type(),
                timeout=HEALTH_CHECK_TIMEOUT_SECONDS,
            )
            current = deserialize_value(response.serialized_current_runs, GetCurrentRunsResult)
            runs: list[str] | None = list(current.current_runs)
        except DagsterUserCodeUnreachableError as exc:
            cause = exc.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNAVAILABLE:  # type: ignore[attr-defined]
                runs = None  # nobody listens there any more: the server and its workers died
            else:
                return CheckRunHealthResult(
                    WorkerStatus.RUNNING, f"code server did not answer in time: {exc}"
                )
        status = worker_status_from_answer(run.run_id, runs)
        msg = (
            "its code server is gone"
            if runs is None
            else "its code server is not executing it"
            if status == WorkerStatus.NOT_FOUND
            else None
        )
        return CheckRunHealthResult(status, msg)


def _empty_request_type() -> Any:
    from dagster._grpc.__generated__ import dagster_api_pb2

    return dagster_api_pb2.Empty
