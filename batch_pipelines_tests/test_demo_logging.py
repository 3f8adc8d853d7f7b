"""The demos' quiet Dagster console is configured once and shared by every family's demo."""

from __future__ import annotations


def test_every_family_demo_runs_dagster_with_the_one_quiet_console_config():
    from batch_pipelines import demo
    from batch_pipelines.configured_batches import demo as configured_batches_demo
    from batch_pipelines.document_ai import demo as document_ai_demo
    from batch_pipelines.risk_modeling import demo_cycle

    assert demo.QUIET == {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    for family in (configured_batches_demo, document_ai_demo, demo_cycle):
        assert family.QUIET is demo.QUIET, family.__name__
