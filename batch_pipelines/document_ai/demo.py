"""The document AI part of `make demo`: the three shipped pipelines, end to end, in Dagster.

For each template a job is submitted through ``submit_document_job`` and its phase assets
are materialized for the job's partition on the given Dagster instance (so the runs and
their metadata can be browsed with `make dev`). The model service is the simulator, whose
outputs are derived from the input: real extractive summaries, categories from keywords,
XML-tagged and pseudo-translated text, vectors. The translation job retrieves from the
project's reference documents; a fourth job shows a pause at its cost budget.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import dagster as dg

from batch_pipelines.cli_options import format_counts
from batch_pipelines.demo import QUIET, database_url_hint
from batch_pipelines.document_ai.assets import JOB_TAG, build_pipeline_definitions
from batch_pipelines.document_ai.jobs import add_reference_documents, submit_document_job
from batch_pipelines.document_ai.pipelines import load_pipelines
from batch_pipelines.document_ai.reports import analytics, item_results, job_status
from batch_pipelines.document_ai.resources import DocumentAISettings
from batch_pipelines.document_ai.store import DocumentJobStore
from batch_pipelines.metadata import checks_line, units_line
from batch_pipelines.resources import BatchStoreResource, ModelsResource, TeamsResource
from batch_pipelines.store.batch_store import BatchStore

PAPERS = [
    "Marie Curie conducted pioneering research on radioactivity in Paris. She was the first scientist to win "
    "two Nobel Prizes, in physics and in chemistry. Her laboratory experiments on radium changed medicine.",
    "The central bank raised interest rates to curb inflation. Markets fell as investors weighed the revenue "
    "outlook of banks, and analysts expect slower economic growth next quarter.",
    "The national football team won the final after extra time. The coach praised the players, and the "
    "stadium celebrated a championship that fans had awaited for decades.",
    "Doctors at the city hospital began a clinical trial of a new vaccine. Patients reported few side effects "
    "and the treatment improved health outcomes in the first study.",
    "Parliament passed the election reform after a long debate. The government said the law will make voting "
    "easier, while the opposition promised a court challenge.",
    "Engineers released new software that lets a network of sensors share data. The technology company said "
    "the computer platform cuts energy use in data centres.",
]
CHAPTERS = [
    "chapter one. elizabeth bennet walked to netherfield through muddy fields to see her sister jane.  "
    "mr darcy noticed her fine eyes, and miss bingley noticed the mud on her petticoat.",
    "chapter two. at the assembly in meryton mr darcy refused to dance. elizabeth overheard him say she was "
    "tolerable, but not handsome enough to tempt him.",
]
REFERENCES = {
    "characters.md": "Elizabeth Bennet is the second of the five Bennet daughters, witty and quick to judge.\n\n"
    "Fitzwilliam Darcy is a proud, wealthy gentleman whose estate is Pemberley in Derbyshire.\n\n"
    "Jane Bennet is the eldest sister, gentle and kind; Charles Bingley rents Netherfield.",
    "places.md": "Netherfield Park is the estate near Meryton rented by Mr Bingley.\n\n"
    "Meryton is the market town near Longbourn where the assemblies are held.",
}


def _resources(directory: Path, store_url: str) -> dict:
    return {
        "batch_store": BatchStoreResource(database_url=store_url),
        "models": ModelsResource(),
        "teams": TeamsResource(),
        "document_ai": DocumentAISettings(
            drop_folder=str(directory / "incoming"),
            exports_dir=str(directory / "exports"),
            control_check_seconds=0.2,
        ),
    }


def _launch(job_def, resources, instance, op: str, config: dict) -> dg.ExecuteInProcessResult:
    return (
        dg.Definitions(jobs=[job_def], resources=resources)
        .resolve_job_def(job_def.name)
        .execute_in_process(
            run_config={**QUIET, "ops": {op: {"config": config}}},
            instance=instance,
            raise_on_error=False,
        )
    )


def run_demo(
    echo: Callable[[str], None],
    directory: Path,
    instance: dg.DagsterInstance,
    store_url: str | None = None,
) -> int:
    """Run the three pipelines and a budget pause on ``store_url`` (the project's store in
    `make demo`; by default a new one in ``directory``); 0 when every job ended as it should."""
    store_url = store_url or f"sqlite:///{directory / 'batch_store.db'}"
    store = BatchStore(store_url)
    jobs = DocumentJobStore(store)
    resources = _resources(directory, store_url)
    pipelines = load_pipelines()
    ok = True

    refs = directory / "references"
    refs.mkdir()
    for name, text in REFERENCES.items():
        (refs / name).write_text(text, encoding="utf-8")
    _launch(
        add_reference_documents,
        resources,
        instance,
        "add_reference_documents_op",
        {"project_id": "novels", "paths": [str(p) for p in sorted(refs.iterdir())]},
    )

    submissions = [
        (
            "research papers",
            "papers",
            "document_pipeline",
            [{"content": t} for t in PAPERS * 4],
            {},
        ),
        (
            "pride and prejudice",
            "novels",
            "book_translation",
            [{"content": t} for t in CHAPTERS],
            {"target_language": "French"},
        ),
        (
            "paper embeddings",
            "papers",
            "embedding_regeneration",
            [{"content": t} for t in PAPERS],
            {},
        ),
        (
            "papers on a budget",
            "papers",
            "document_pipeline",
            [{"content": t} for t in PAPERS * 5],
            {"cost_budget": 0.002},
        ),
    ]
    for name, project, pipeline, items, extra in submissions:
        config = {
            "name": name,
            "project_id": project,
            "pipeline": pipeline,
            "items": items,
            "concurrency": 8,
            **extra,
        }
        submitted = _launch(
            submit_document_job, resources, instance, "submit_document_job_op", config
        )
        if not submitted.success:
            echo(f"  {name}: submission failed")
            ok = False
            continue
        job = jobs.list_jobs(project_id=project)[0][0]
        template = pipelines[pipeline]
        assets, asset_job, _ = build_pipeline_definitions(template)
        defs = dg.Definitions(assets=assets, jobs=[asset_job], resources=resources)
        result = defs.resolve_job_def(asset_job.name).execute_in_process(
            partition_key=job.key,
            instance=instance,
            tags={JOB_TAG: job.key},
            run_config=QUIET,
            raise_on_error=False,
        )
        job = jobs.get_job(job.id)
        status = job_status(jobs, job, template)
        p = status["progress"]
        echo(
            f"  {pipeline} job '{name}' ({len(items)} items, {' -> '.join(ph.name for ph in template.phases)}): "
            f"{job.status}; {p['completed']} completed, {p['failed']} failed; cost {status['cost']}, {status['tokens']} tokens"
            f" [run {result.run_id[:8]}]"
        )
        if job.status_reason:
            echo(f"    {job.status_reason}")
        first = item_results(jobs, job, template, limit=1)
        if first and first[0]["output"] is not None:
            shown = first[0]["output"]
            shown = (
                f"a vector of {len(shown)} numbers"
                if isinstance(shown, list)
                else str(shown)[:110].replace("\n", " ")
            )
            echo(f"    item 0 -> {shown}")
            summary = first[0]["phase_outputs"].get("summarization")
            if summary:
                echo(f"    its summary: {str(summary)[:110]}")
            if first[0]["passages"]:
                used = next(iter(first[0]["passages"].values()))
                echo(f"    retrieved for it: {', '.join(x['document'] for x in used)}")
        stats = analytics(jobs, job, template)
        echo(
            f"    cost by phase: {format_counts(stats['cost_by_phase'])}; success rate "
            + (f"{stats['success_rate']}%" if stats["success_rate"] is not None else "-")
        )
        materialized = result.get_asset_materialization_events()
        if materialized:
            last = materialized[-1].step_materialization_data.materialization
            echo(f"    phase {last.asset_key.path[-1]}: {units_line(last.metadata)}")
        echo(f"    {checks_line(result.get_asset_check_evaluations())}")
        expected = "PAUSED" if "cost_budget" in extra else "COMPLETED"
        ok = ok and job.status.value == expected

    echo("  where to look:")
    echo(f"    .venv/bin/batch-pipelines docs list{database_url_hint(store_url)}")
    echo(
        f"    .venv/bin/batch-pipelines docs status <job> / results / analytics{database_url_hint(store_url)}"
    )
    echo("    the Dagster UI (make dev): asset groups document_ai_<pipeline>, partition = the job")
    store.dispose()
    return 0 if ok else 1
