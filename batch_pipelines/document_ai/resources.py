"""Settings of the document AI family, as a Dagster resource."""

from pathlib import Path

import dagster as dg

from batch_pipelines.core.costs import DEFAULT_PRICES, PriceTable
from batch_pipelines.core.json_values import parse_json_object
from batch_pipelines.document_ai.pipelines import (
    SHIPPED_PIPELINES_DIR,
    PipelineTemplate,
    load_valid_pipelines,
)
from batch_pipelines.document_ai.rag import DEFAULT_EMBEDDING_MODEL
from batch_pipelines.document_ai.router import DEFAULT_ROUTER, DEFAULT_VALIDATOR_MODEL, ModelRouter
from batch_pipelines.resources import DATA_DIR, env_or

PIPELINES_DIR_ENV = "DOCUMENT_AI_PIPELINES_DIR"


class DocumentAISettings(dg.ConfigurableResource):
    """Where pipeline templates live, where item files are dropped, where exports go.

    The drop folder is laid out ``<drop_folder>/<pipeline>/<project_id>/<job name>.jsonl``
    (or .csv/.xlsx): the path says which pipeline and project a file is for.
    """

    pipelines_dir: str = str(SHIPPED_PIPELINES_DIR)
    drop_folder: str = str(DATA_DIR / "document_ai" / "incoming")
    exports_dir: str = str(DATA_DIR / "document_ai" / "exports")
    lease_seconds: float = 60.0
    control_check_seconds: float = 1.0
    # Which model does which task, and what models cost. Empty: the simulator's models
    # (sim-*) and their prices. With a real MODELS_BASE_URL set all four, e.g.
    # model_routes='{"summarization": "gpt-4o", "*": "gpt-4o-mini"}' ("*" is the fallback)
    # and prices='{"gpt-4o": {"input_per_1k": "0.0025", "output_per_1k": "0.01"}, ...}'.
    model_routes: str = ""
    prices: str = ""
    validator_model: str = DEFAULT_VALIDATOR_MODEL
    embedding_model: str = DEFAULT_EMBEDDING_MODEL

    def router(self) -> ModelRouter:
        if not self.model_routes.strip():
            return DEFAULT_ROUTER
        routes = parse_json_object(self.model_routes, "document_ai.model_routes") or {}
        fallback = routes.pop("*", None) or DEFAULT_ROUTER.fallback
        return ModelRouter(routes, fallback=fallback)

    def job_runner(self, jobs, job, template, client, *, options, runner_id=None):
        """The runner of ``job`` with its project's reference library for retrieval: built
        one way for a run's phase asset and for a worker in the terminal (`docs ... --run`)."""
        from batch_pipelines.document_ai.rag import ReferenceLibrary
        from batch_pipelines.document_ai.runner import DocumentJobRunner

        prices = self.price_table()
        library = ReferenceLibrary(
            jobs.engine,
            client,
            embedding_model=self.embedding_model,
            prices=prices,
            on_cost=jobs.store.record_cost_entries,
            batch_id=job.batch_id,
        )
        return DocumentJobRunner(
            jobs,
            job,
            template,
            client,
            router=self.router(),
            prices=prices,
            retrieve=library.retrieve,
            retrieval_model=library.embedding_model,
            options=options,
            runner_id=runner_id,
        )

    def price_table(self) -> PriceTable:
        """The prices; every model the router, the validator and retrieval use must be priced."""
        table = (
            PriceTable.from_mapping(parse_json_object(self.prices, "document_ai.prices") or {})
            if self.prices.strip()
            else DEFAULT_PRICES
        )
        for model in {*self.router().models(), self.validator_model, self.embedding_model}:
            table.price_for(model)  # raises ConfigurationError naming the model
        return table

    def pipelines(self) -> dict[str, PipelineTemplate]:
        """The valid templates (invalid ones are reported by ``document_pipelines_problems``)."""
        return load_valid_pipelines(Path(self.pipelines_dir))[0]

    def pipeline_problems(self) -> list[str]:
        return load_valid_pipelines(Path(self.pipelines_dir))[1]


def document_ai_settings() -> DocumentAISettings:
    """The settings as the code location declares them: each field from its DOCUMENT_AI_*
    variable when set, else its default. The CLI resolves the same factory."""
    defaults = DocumentAISettings()
    return DocumentAISettings(
        pipelines_dir=env_or(PIPELINES_DIR_ENV, defaults.pipelines_dir),
        drop_folder=env_or("DOCUMENT_AI_DROP_FOLDER", defaults.drop_folder),
        exports_dir=env_or("DOCUMENT_AI_EXPORTS_DIR", defaults.exports_dir),
        model_routes=env_or("DOCUMENT_AI_MODEL_ROUTES", ""),
        prices=env_or("DOCUMENT_AI_PRICES", ""),
        validator_model=env_or("DOCUMENT_AI_VALIDATOR_MODEL", defaults.validator_model),
        embedding_model=env_or("DOCUMENT_AI_EMBEDDING_MODEL", defaults.embedding_model),
    )
