"""One role's onboarding workflow: the steps of seed 000's per-role ``/push``.

validate the input -> resolve the taxonomy role -> gather the role's documents -> AI
assessment -> enhancement workflows (unless skipped) -> publish the dashboard record.

The steps are plain async code with the model client and the publisher passed in, so
they are tested without Dagster; the asset runs them in a partition's run. A failure is a
:class:`StepFailed` naming its step and reason, and says whether trying again can help
(a 5xx or timeout of the model service can; an invalid role cannot), which is what the
asset's retry policy needs to know.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batch_pipelines.clients.http import TransientServiceError
from batch_pipelines.clients.models import ModelClient
from batch_pipelines.core.costs import (
    DEFAULT_PRICES,
    CostEntry,
    PriceTable,
    reported_or_estimated_usage,
    summarize,
)
from batch_pipelines.core.errors import BatchPipelinesError
from batch_pipelines.role_onboarding.submission import slugify, split_partition_key

ENHANCEMENT_WORKFLOWS = ("skills_enrichment", "career_paths")


class StepFailed(BatchPipelinesError):
    """A step of a role's workflow failed; ``transient`` when a retry may succeed."""

    code = "BP-ROLE-STEP"

    def __init__(self, step: str, reason: str, *, transient: bool):
        super().__init__(f"{step}: {reason}", details={"step": step, "transient": transient})
        self.step = step
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class RoleInput:
    partition_key: str
    role_name: str
    draup_role_name: str | None = None
    skip_enhancement_workflows: bool = False


@dataclass(frozen=True)
class TaxonomyRole:
    taxonomy_role_id: str
    name: str


@dataclass
class WorkflowResult:
    steps: list[str] = field(default_factory=list)
    taxonomy: TaxonomyRole | None = None
    documents: list[dict[str, str]] = field(default_factory=list)
    assessment: str = ""
    enhancements: dict[str, str] = field(default_factory=dict)
    costs: list[CostEntry] = field(default_factory=list)
    published: Any = None

    @property
    def cost(self) -> float:
        return float(summarize(self.costs).total_cost) if self.costs else 0.0


def validate_input(role: RoleInput) -> None:
    try:
        _, slug = split_partition_key(role.partition_key)
    except BatchPipelinesError as exc:
        raise StepFailed("validate_input", exc.message, transient=False) from None
    if not role.role_name.strip() or not slugify(role.role_name):
        raise StepFailed("validate_input", "role_name is empty", transient=False)
    if slugify(role.role_name) != slug:
        raise StepFailed(
            "validate_input",
            f"role_name {role.role_name!r} does not belong to partition {role.partition_key!r}",
            transient=False,
        )


def resolve_taxonomy(role: RoleInput) -> TaxonomyRole:
    """The taxonomy role: the given draup_role_name (draup_role_id is its alias), else the
    role's own name. Its id is stable for a name, so two companies' "Claims Handler" roles
    map to one taxonomy role."""
    name = role.draup_role_name or role.role_name
    slug = slugify(name)
    if not slug:
        raise StepFailed("resolve_taxonomy", f"no taxonomy role matches {name!r}", transient=False)
    digest = hashlib.sha256(slug.encode()).hexdigest()[:10]
    return TaxonomyRole(taxonomy_role_id=f"dr-{digest}", name=name)


def gather_documents(role: RoleInput, taxonomy: TaxonomyRole) -> list[dict[str, str]]:
    """The documents the assessment reads: the role's description and its taxonomy entry."""
    company, _ = split_partition_key(role.partition_key)
    return [
        {
            "kind": "job_description",
            "text": (
                f"The {role.role_name} at {company} is responsible for the work of a {taxonomy.name}. "
                f"The {role.role_name} works with data, customers and colleagues across {company}. "
                "The role uses software and analysis to make decisions and report on results."
            ),
        },
        {
            "kind": "taxonomy",
            "text": f"Taxonomy role {taxonomy.taxonomy_role_id}: {taxonomy.name}.",
        },
    ]


async def _model_call(
    client: ModelClient,
    step: str,
    *,
    model: str,
    instruction: str,
    text: str,
    call_key: str,
    ledger_batch_id: int | None,
    prices: PriceTable,
    result: WorkflowResult,
    on_cost: Callable[[CostEntry], None],
) -> str:
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": text}]
    try:
        answer = await client.chat(messages, model=model, idempotency_key=call_key)
    except TransientServiceError as exc:
        raise StepFailed(step, str(exc), transient=True) from None
    except BatchPipelinesError as exc:
        raise StepFailed(step, str(exc), transient=False) from None
    usage = reported_or_estimated_usage(answer.usage, instruction + text, answer.content)
    # item_id stays empty: the ledger's item ids are the items table's; the call key names the role.
    entry = CostEntry.priced(
        call_key=call_key,
        batch_id=ledger_batch_id,
        model=model,
        usage=usage,
        prices=prices,
        phase=step,
    )
    result.costs.append(entry)
    on_cost(entry)
    return answer.content


async def run_role_workflow(
    role: RoleInput,
    *,
    client: ModelClient,
    model: str,
    publish: Callable[[WorkflowResult], Any],
    run_ref: str,
    on_step: Callable[[str], None] = lambda step: None,
    on_cost: Callable[[CostEntry], None] = lambda entry: None,
    ledger_batch_id: int | None = None,
    prices: PriceTable = DEFAULT_PRICES,
) -> WorkflowResult:
    """Run every step in order; ``publish`` stores the dashboard record and returns it.

    ``run_ref`` makes the model calls' idempotency and ledger keys (``{run_ref}:{call}``):
    give the same one to every try of a workflow attempt, so a retried step replays the
    answer and records the call once. ``on_cost`` receives each billed call's ledger entry
    (billed to ``ledger_batch_id``) as soon as the call answered, so a later failure does
    not lose it.
    """
    result = WorkflowResult()
    common = {
        "model": model, "ledger_batch_id": ledger_batch_id, "prices": prices, "result": result, "on_cost": on_cost,
    }  # fmt: skip

    on_step("validate_input")
    validate_input(role)
    result.steps.append("validate_input")

    on_step("resolve_taxonomy")
    result.taxonomy = resolve_taxonomy(role)
    result.steps.append("resolve_taxonomy")

    on_step("gather_documents")
    result.documents = gather_documents(role, result.taxonomy)
    result.steps.append("gather_documents")

    on_step("ai_assessment")
    corpus = "\n\n".join(d["text"] for d in result.documents)
    result.assessment = await _model_call(
        client,
        "ai_assessment",
        instruction="Summarize the role: its tasks, skills and exposure to automation.",
        text=corpus,
        call_key=f"{run_ref}:ai_assessment",
        **common,
    )
    result.steps.append("ai_assessment")

    if not role.skip_enhancement_workflows:
        on_step("enhancement_workflows")
        instructions = {
            "skills_enrichment": "Categorize the skills this role needs.",
            "career_paths": "Summarize the career paths into and out of this role.",
        }
        for name in ENHANCEMENT_WORKFLOWS:
            result.enhancements[name] = await _model_call(
                client,
                "enhancement_workflows",
                instruction=instructions[name],
                text=result.assessment or corpus,
                call_key=f"{run_ref}:{name}",
                **common,
            )
        result.steps.append("enhancement_workflows")

    on_step("publish_dashboard")
    try:
        result.published = publish(result)
    except BatchPipelinesError as exc:
        raise StepFailed("publish_dashboard", str(exc), transient=False) from None
    except Exception as exc:  # noqa: BLE001 - a database hiccup: the retry policy may fix it
        raise StepFailed(
            "publish_dashboard", f"{type(exc).__name__}: {exc}", transient=True
        ) from None
    result.steps.append("publish_dashboard")
    return result
