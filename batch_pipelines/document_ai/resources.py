"""Settings of the document AI family, as a Dagster resource."""

from pathlib import Path

import dagster as dg

from batch_pipelines.document_ai.pipelines import (
    SHIPPED_PIPELINES_DIR,
    PipelineTemplate,
    load_valid_pipelines,
)
from batch_pipelines.resources import DATA_DIR


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

    def pipelines(self) -> dict[str, PipelineTemplate]:
        """The valid templates (invalid ones are reported by ``document_pipelines_problems``)."""
        return load_valid_pipelines(Path(self.pipelines_dir))[0]

    def pipeline_problems(self) -> list[str]:
        return load_valid_pipelines(Path(self.pipelines_dir))[1]
