"""batch_pipelines: slow, failure-prone batch work against outside services as Dagster assets."""
