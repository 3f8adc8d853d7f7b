"""Which model does which task: a route per task type, and a phase's override wins.

The default routes use the local simulator's models (``sim-*``, priced in
``core.costs.DEFAULT_PRICES``): cheap work (cleanup, tagging, categorizing, chat) goes to the
small model, work where quality shows (summaries, translation, analysis) to the large one,
embeddings to the embedding model, and validation to its own model. Real deployments pass
their own routes (and prices for every model they route to).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "DEFAULT_ROUTER",
    "DEFAULT_ROUTES",
    "DEFAULT_VALIDATOR_MODEL",
    "ModelRouter",
]

DEFAULT_VALIDATOR_MODEL = "sim-validator"

DEFAULT_ROUTES: Mapping[str, str] = MappingProxyType(
    {
        "ocr_cleanup": "sim-small",
        "text_cleanup": "sim-small",
        "xml_tagging": "sim-small",
        "categorize": "sim-small",
        "chat": "sim-small",
        "summarization": "sim-large",
        "translation": "sim-large",
        "research": "sim-large",
        "analysis": "sim-large",
        "code": "sim-large",
        "creative": "sim-large",
        "entity_extraction": "sim-large",
        "embedding_generation": "sim-embed",
    }
)


def _model_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty model name, got {value!r}")
    return value.strip()


class ModelRouter:
    """Maps a task type to a model; task types without a route get ``fallback``."""

    def __init__(self, default_models: Mapping[str, str], fallback: str) -> None:
        # Keys are plain strings: a StrEnum task type (pipelines.TaskType) looks up the same.
        self.default_models: Mapping[str, str] = MappingProxyType(
            {
                str(task): _model_name(model, f"route of {task!r}")
                for task, model in default_models.items()
            }
        )
        self.fallback = _model_name(fallback, "fallback")

    def model_for(self, task_type: str, override: str | None = None) -> str:
        """The phase's ``override`` when set, else the task type's route, else the fallback."""
        if override is not None and override.strip():
            return override.strip()
        return self.default_models.get(str(task_type), self.fallback)

    def models(self) -> frozenset[str]:
        """Every model this router can pick without an override (to check prices up front)."""
        return frozenset({*self.default_models.values(), self.fallback})

    def __repr__(self) -> str:
        return f"ModelRouter({dict(self.default_models)!r}, fallback={self.fallback!r})"


DEFAULT_ROUTER = ModelRouter(DEFAULT_ROUTES, fallback="sim-small")
