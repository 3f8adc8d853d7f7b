"""The document AI family's part of the code location: one asset chain and asset job per
pipeline template, the lifecycle jobs, the launcher and drop-folder sensors."""

import os
from pathlib import Path

import dagster as dg

from batch_pipelines.document_ai.assets import build_pipeline_definitions
from batch_pipelines.document_ai.jobs import DOCUMENT_AI_JOBS, build_submit_document_job
from batch_pipelines.document_ai.pipelines import SHIPPED_PIPELINES_DIR, load_valid_pipelines
from batch_pipelines.document_ai.resources import PIPELINES_DIR_ENV, document_ai_settings
from batch_pipelines.document_ai.sensors import (
    build_document_items_drop_sensor,
    build_document_job_launcher,
    document_pipelines_problems,
)


def document_ai_definitions() -> dg.Definitions:
    """Assets, jobs, sensors and the ``document_ai`` settings resource.

    The asset graph is built from the templates when the code location loads, so a new
    template file appears after a reload. A template with errors is left out and the
    ``document_pipelines_problems`` sensor lists its problems (file and field) in red.
    """
    pipelines_dir = os.environ.get(PIPELINES_DIR_ENV) or str(SHIPPED_PIPELINES_DIR)
    assets, jobs = [], []
    templates, _ = load_valid_pipelines(Path(pipelines_dir))
    for template in templates.values():
        phase_assets, job, _ = build_pipeline_definitions(template)
        assets += phase_assets
        jobs.append(job)
    # In the launchpad, a job's pipeline is a choice of the templates loaded here.
    submit = build_submit_document_job(sorted(templates))
    lifecycle = [submit if j.name == submit.name else j for j in DOCUMENT_AI_JOBS]
    return dg.Definitions(
        assets=assets,
        jobs=[*jobs, *lifecycle],
        sensors=[
            build_document_job_launcher(jobs),
            build_document_items_drop_sensor(submit),
            document_pipelines_problems,
        ],
        resources={
            "document_ai": document_ai_settings(),
        },
    )
