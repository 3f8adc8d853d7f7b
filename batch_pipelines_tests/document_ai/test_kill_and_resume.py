"""Kill test: a 2,000-item, 3-phase document job SIGKILLed at five random points completes
with every item processed, little redone per kill, and exactly one ledger entry per billed call.

The model simulator runs as a server process of its own (it is the outside service: it
survives the kills and keeps the bill); each worker process is a runner that gets killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, DocJobStatus, JobOptions
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.store import COMPLETED, DocumentJobStore
from batch_pipelines.store.batch_store import BatchStore

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 2000
KILLS = 5
CONCURRENCY = 20
CHECKPOINT_FREQUENCY = 10
API_KEY = "kill-test-key"
WORDS = [
    "radioactivity",
    "research",
    "Paris",
    "revenue",
    "profit",
    "market",
    "football",
    "team",
    "stadium",
    "hospital",
    "patients",
    "treatment",
    "court",
    "judge",
    "election",
    "parliament",
    "climate",
    "energy",
    "software",
    "network",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def models_server():
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch_pipelines.cli",
            "simulate",
            "models",
            "--port",
            str(port),
            "--api-key",
            API_KEY,
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/_sim/stats", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("model simulator server did not start")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def _worker(
    store_url: str, models_url: str, job_id: int, lease_seconds: float | None = None
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch_pipelines_tests.document_ai.kill_worker",
            store_url,
            models_url,
            str(job_id),
            *([str(lease_seconds)] if lease_seconds is not None else []),
        ],
        cwd=ROOT,
        env={**os.environ, "MODELS_API_KEY": API_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _replayed_keys(models_url: str) -> set[str]:
    return set(
        httpx.get(f"{models_url}/_sim/stats", params={"replayed_keys": "1"}).json()["replayed_keys"]
    )


def _item_phase(call_key: str) -> str:
    # call keys are "<item-phase request id>:<call|validation>:<attempt>"
    return call_key.split(":")[0]


def _final_keys(call_keys) -> dict[str, str]:
    """item-phase -> the key of its last call (the last attempt's validation, if validated)."""

    def order(key: str) -> tuple[int, int]:
        _, kind, attempt = key.split(":")
        return int(attempt), kind == "validation"

    final: dict[str, str] = {}
    for key in call_keys:
        ip = _item_phase(key)
        if ip not in final or order(key) > order(final[ip]):
            final[ip] = key
    return final


def _results_written(jobs: DocumentJobStore, batch_id: int) -> int:
    return sum(sum(c.values()) for c in jobs.phase_counts(batch_id).values())


@pytest.mark.slow
def test_a_document_job_killed_five_times_completes_with_nothing_lost_and_nothing_billed_twice(
    database_url, models_server
):
    jobs = DocumentJobStore(BatchStore(database_url))
    rng = random.Random(20261123)
    texts = [
        " ".join(rng.choice(WORDS) for _ in range(30)).capitalize() + f". Document {i}."
        for i in range(ITEMS)
    ]
    spec = BatchJobSpec(
        name="kill test",
        project_id="kill",
        pipeline="document_pipeline",
        items=parse_items([{"content": t} for t in texts]),
        options=JobOptions(concurrency=CONCURRENCY, checkpoint_frequency=CHECKPOINT_FREQUENCY),
    )
    template = load_pipelines()["document_pipeline"]
    job = jobs.create_job(spec, template)
    # Five random kill points over the whole run (about 3 x 2,000 results in all).
    points = sorted(rng.sample(range(300, 5200), KILLS))
    # Item-phases whose calls the service had answered but a killed worker had not
    # checkpointed are asked again by the next worker: the service sees those keys twice.
    # Snapshot the redone set just before each kill and at the end: the growth between two
    # snapshots is the work redone because of the kill between them.
    snapshots: list[set[str]] = []
    for point in points:
        proc = _worker(database_url, models_server, job.id)
        deadline = time.monotonic() + 180
        while _results_written(jobs, job.batch_id) < point:
            assert proc.poll() is None, (
                f"worker ended before kill point {point}: {proc.stdout.read()}"
            )
            assert time.monotonic() < deadline, f"kill point {point} not reached"
            time.sleep(0.005)
        snapshots.append(_replayed_keys(models_server))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    final = _worker(database_url, models_server, job.id)
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out
    assert jobs.get_job(job.id).status == DocJobStatus.COMPLETED
    snapshots.append(_replayed_keys(models_server))

    # Every item went through every phase it reached; the first phase saw all of them.
    counts = jobs.phase_counts(job.batch_id)
    phases = [p.name for p in template.phases]
    assert sum(counts[phases[0]].values()) == ITEMS
    assert counts[phases[-1]].get(COMPLETED, 0) > ITEMS // 2, counts  # the work was really done
    for before, after in zip(phases, phases[1:], strict=False):
        assert sum(counts[after].values()) == counts[before].get(COMPLETED, 0)

    # The bill: one ledger entry per call the service billed, each call key once.
    stats = httpx.get(f"{models_server}/_sim/stats").json()
    entries = jobs.store.list_cost_entries(job.batch_id)
    assert len(entries) == stats["billed_calls"]
    assert len({e.call_key for e in entries}) == len(entries)
    kinds = Counter(e.kind for e in entries)
    assert kinds["call"] == sum(
        sum(c.values()) for c in counts.values()
    )  # one first call per item-phase
    # Redone per kill, seen from the service: item-phases with calls answered before the kill
    # and asked again after it. The runner loses at most one checkpoint's worth of finished
    # items (test_runner checks the buffer bound); the others were in flight - answered by
    # the service, perhaps all calls, but not yet read by the worker when it died. So what
    # is redone stays within checkpoint frequency + concurrency.
    final = set(
        _final_keys(
            e.call_key for e in entries if e.kind in ("call", "validation", "retry")
        ).values()
    )
    finished_redone, redone = [], []
    for before, after in zip(snapshots, snapshots[1:], strict=False):
        new = after - before
        finished_redone.append(len({_item_phase(k) for k in new & final}))
        redone.append(len({_item_phase(k) for k in new}))
    assert all(n <= CHECKPOINT_FREQUENCY + CONCURRENCY for n in finished_redone), finished_redone
    assert all(n <= CHECKPOINT_FREQUENCY + CONCURRENCY for n in redone), redone
    assert sum(redone) > 0, "the kills never interrupted work"
    print(json.dumps({"kill_points": points, "finished_redone": finished_redone, "redone": redone}))
    jobs.store.dispose()


# --------------------------------------------------------------------------- a killed `--run`


def _killed_job(tmp_path, models_url: str):
    """A job whose worker (lease of an hour: only its pid can tell it died) was SIGKILLed
    midway; (store url, job store, job)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    jobs = DocumentJobStore(BatchStore(url))
    spec = BatchJobSpec(
        name="killed run",
        project_id="kill",
        pipeline="document_pipeline",
        items=parse_items(
            [{"content": f"{WORDS[i % 20]} research in Paris {i}."} for i in range(300)]
        ),
        options=JobOptions(concurrency=4, checkpoint_frequency=5),
    )
    job = jobs.create_job(spec, load_pipelines()["document_pipeline"])
    proc = _worker(url, models_url, job.id, lease_seconds=3600)
    deadline = time.monotonic() + 60
    while _results_written(jobs, job.batch_id) < 20:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the worker wrote nothing"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = jobs.get_job(job.id)
    assert killed.status == DocJobStatus.RUNNING and killed.runner_id  # what the kill leaves
    return url, jobs, killed


def _docs(*args: str):
    from click.testing import CliRunner

    from batch_pipelines.cli import main

    return CliRunner().invoke(main, ["docs", *args])


@pytest.mark.slow
def test_a_job_whose_worker_was_killed_is_resumed_at_once_from_the_cli(tmp_path, models_server):
    url, jobs, killed = _killed_job(tmp_path, models_server)
    status = _docs("status", killed.key, "--database-url", url)
    assert "is no longer running" in status.output and "docs resume" in status.output
    assert "ETA: - s" in status.output or "ETA: - " in status.output
    out = _docs("resume", killed.key, "--run", "--database-url", url)
    assert out.exit_code == 0, out.output
    assert "is no longer running" in out.output
    assert jobs.get_job(killed.id).status == DocJobStatus.COMPLETED
    assert jobs.get_job(killed.id).runner_id is None
    jobs.store.dispose()


@pytest.mark.slow
def test_pausing_a_killed_job_then_resuming_it_within_the_lease_takes_the_dead_workers_claim_over(
    tmp_path, models_server
):
    url, jobs, killed = _killed_job(tmp_path, models_server)
    assert _docs("pause", killed.key, "--database-url", url).exit_code == 0
    out = _docs("resume", killed.key, "--run", "--database-url", url)
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output
    assert jobs.get_job(killed.id).status == DocJobStatus.COMPLETED
    jobs.store.dispose()
