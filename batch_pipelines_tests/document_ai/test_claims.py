"""Who holds a document job's claim, and when a successor may take it over."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from batch_pipelines.document_ai import cli as docs_cli
from batch_pipelines.document_ai.batch_jobs import BatchJobSpec, DocJobStatus
from batch_pipelines.document_ai.claims import claim_state, new_runner_id, parse_runner_id
from batch_pipelines.document_ai.items import parse_items
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.runner import DocumentJobRunner, JobNotRunnable
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.simulators.embedded import model_client
from batch_pipelines.simulators.models import ModelSimulator

NOW = datetime(2026, 12, 5, 3, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def test_a_claim_id_names_the_host_and_pid_of_its_worker():
    holder = parse_runner_id(new_runner_id(host="worker-1", pid=4242))
    assert (holder.host, holder.pid) == ("worker-1", 4242)
    assert parse_runner_id("doc-runner-abc") is None and parse_runner_id(None) is None


def test_a_dead_pid_on_this_host_frees_the_claim_a_live_one_or_another_hosts_does_not():
    claim = new_runner_id(host="here", pid=4242)
    dead = claim_state(claim, LATER, NOW, host="here", is_alive=lambda pid: False)
    assert dead.dead and "pid 4242 on here" in dead.why
    live = claim_state(claim, LATER, NOW, host="here", is_alive=lambda pid: True)
    assert not live.dead and "being worked by pid 4242 on here" in live.why
    elsewhere = claim_state(claim, LATER, NOW, host="there", is_alive=lambda pid: False)
    assert not elsewhere.dead  # its pid cannot be checked from here: the lease decides
    expired = claim_state(claim, NOW - timedelta(seconds=1), NOW, host="there")
    assert expired.dead and "ran out" in expired.why
    assert claim_state(None, None, NOW, host="here").free


def _job(store):
    jobs = DocumentJobStore(store)
    spec = BatchJobSpec(
        name="claimed",
        project_id="p",
        pipeline="embedding_regeneration",
        items=parse_items([{"content": "text one"}, {"content": "text two"}]),
    )
    return jobs, jobs.create_job(spec, load_pipelines()["embedding_regeneration"])


def test_a_live_workers_claim_is_respected_with_a_one_line_message(store, monkeypatch):
    jobs, job = _job(store)
    # This very process is the live worker holding the job for an hour.
    assert jobs.claim_runner(job.id, new_runner_id(), 3600)
    template = load_pipelines()["embedding_regeneration"]

    async def try_to_run():
        async with model_client(ModelSimulator()) as client:
            return DocumentJobRunner(jobs, job, template, client).claim()

    with pytest.raises(JobNotRunnable, match=f"being worked by pid {os.getpid()}"):
        asyncio.run(try_to_run())
    assert jobs.fail_if_worker_died(job.id).status == DocJobStatus.RUNNING

    monkeypatch.setattr(docs_cli, "CLAIM_WAIT_SECONDS", 0.2)
    url = store.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    assert runner.invoke(docs_cli.docs, ["pause", job.key, "--database-url", url]).exit_code == 0
    out = runner.invoke(docs_cli.docs, ["resume", job.key, "--run", "--database-url", url])
    assert out.exit_code == 1 and "Traceback" not in out.output
    (line,) = [x for x in out.output.splitlines() if x.startswith("Error:")]
    assert "[BP-DOC-NOT-RUNNABLE]" in line and f"pid {os.getpid()}" in line


def test_a_resume_for_a_worker_here_makes_the_job_running_and_claimed_in_one_step(store):
    jobs, job = _job(store)
    jobs.apply_action(job.id, "pause")
    worker = new_runner_id()
    resumed = jobs.apply_action(job.id, "resume", claimed_by=worker, lease_seconds=60)
    # No moment where the launcher could see it RUNNING without a worker.
    assert resumed.status == DocJobStatus.RUNNING and resumed.runner_id == worker
    assert resumed.lease_expires_at > datetime.now(UTC) + timedelta(seconds=30)
    assert resumed.generation == job.generation + 1


def test_a_resume_for_a_worker_here_leaves_the_job_as_it_was_while_a_live_worker_holds_it(store):
    jobs, job = _job(store)
    jobs.apply_action(job.id, "pause")
    holder = new_runner_id()  # this very process: a live worker still letting go
    assert jobs.claim_runner(job.id, holder, 3600)
    with pytest.raises(JobNotRunnable, match=f"being worked by pid {os.getpid()}"):
        jobs.apply_action(job.id, "resume", claimed_by=new_runner_id())
    after = jobs.get_job(job.id)
    assert (after.status, after.runner_id, after.generation) == (
        DocJobStatus.PAUSED,
        holder,
        job.generation,
    )
    # once it lets go, the resume takes the claim
    jobs.release_runner(job.id, holder)
    worker = new_runner_id()
    assert jobs.apply_action(job.id, "resume", claimed_by=worker).runner_id == worker


def test_docs_resume_run_works_the_job_under_the_claim_it_took_with_the_resume(store, monkeypatch):
    jobs, job = _job(store)
    jobs.apply_action(job.id, "pause")
    seen = []

    def worker(jobs, record, template, runner_id=None, **_):
        seen.append((record.status, record.runner_id, runner_id))
        return record

    monkeypatch.setattr(docs_cli, "run_job_here", worker)
    url = store.engine.url.render_as_string(hide_password=False)
    out = CliRunner().invoke(docs_cli.docs, ["resume", job.key, "--run", "--database-url", url])
    assert out.exit_code == 0, out.output
    ((status, claimed, passed),) = seen
    assert status == DocJobStatus.RUNNING and claimed is not None and passed == claimed
