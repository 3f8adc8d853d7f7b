"""httpx clients of the outside world (Risk Modeler, OpenAI-compatible models, Teams).

Families reach these through Dagster resources; the engine acts on the typed errors in
``batch_pipelines.clients.http`` (transient: retry later with the same idempotency key;
permanent: the job is in ERROR).
"""
