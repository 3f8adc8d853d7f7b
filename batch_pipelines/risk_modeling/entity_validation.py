"""Validation of a batch against the Risk Modeler's current state, before submission.

The issue's rules: EDM creation needs the server and no existing EDM; portfolio creation
needs the EDMs and no existing portfolios; MRI import needs EDMs, portfolios, the CSV files
and empty portfolios; treaties need EDMs and no existing treaties; EDM upgrade and GeoHaz
need EDMs and portfolios (GeoHaz: with locations); portfolio mapping needs base portfolios
with accounts and no sub-portfolios; analysis needs EDMs, portfolios, treaties, valid
reference data and no existing analyses (existing ones are reported in ``existing``, not as
errors: the analyst decides skip or delete-and-resubmit); grouping needs its analyses/groups,
and an existing group is reported in ``existing`` too (the seed deletes groups for
resubmission, ``delete_groups_for_jobs``); export needs the analyses/groups and no existing
RDM. ``delete_existing`` deletes what the analyst chose to redo.

Two parts: ``fetch_state`` reads what a batch type needs with a few listing calls (one per
kind, or per EDM; never one per job), and ``check_batch`` is the pure decision, a function
of that snapshot and the job configurations, tested directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batch_pipelines.clients.risk_modeler import DEFAULT_SERVER_NAME, RiskModelerClient
from batch_pipelines.core.concurrency import map_bounded
from batch_pipelines.risk_modeling.batch_types import BatchType
from batch_pipelines.risk_modeling.context import HandlerContext

JobConfiguration = Mapping[str, Any]

REFERENCE_LABELS = {
    "model-profiles": "Model profile",
    "output-profiles": "Output profile",
    "event-rate-schemes": "Event rate scheme",
}


@dataclass(frozen=True)
class EntityValidation:
    errors: list[str] = field(default_factory=list)
    # Entities that already exist and are not errors (analyses: skip or delete-and-resubmit).
    existing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class PortfolioState:
    name: str
    accounts: int = 0
    locations: int = 0


@dataclass
class RiskModelerState:
    """What the Risk Modeler holds, as far as one batch type's rules need it. A kind left
    as None was not fetched (its rules are not checked)."""

    servers: set[str] | None = None
    edms: set[str] | None = None
    # EDM -> portfolio name -> counts; only EDMs that exist have an entry.
    portfolios: dict[str, dict[str, PortfolioState]] = field(default_factory=dict)
    treaties: dict[str, set[str]] = field(default_factory=dict)
    analyses: set[str] | None = None
    groups: set[str] | None = None
    rdms: set[str] | None = None
    # kind (model-profiles, ...) -> names that exist among those asked for.
    reference: dict[str, set[str]] = field(default_factory=dict)
    # Files present in the cycle's data folder (None: not checked).
    files: set[str] | None = None
    files_dir: str = ""


class _Errors:
    def __init__(self) -> None:
        self.items: dict[str, None] = {}

    def add(self, message: str) -> None:
        self.items.setdefault(message, None)

    def list(self) -> list[str]:
        return list(self.items)


# --------------------------------------------------------------------------- pure checks


def _edm_exists(state: RiskModelerState, edm: str, errors: _Errors) -> bool:
    if state.edms is not None and edm not in state.edms:
        errors.add(f'EDM "{edm}" does not exist')
        return False
    return True


def _portfolio(
    state: RiskModelerState, edm: str, name: str, errors: _Errors
) -> PortfolioState | None:
    """The portfolio, reporting a missing EDM or portfolio (once each)."""
    if not _edm_exists(state, edm, errors):
        return None
    found = state.portfolios.get(edm, {}).get(name)
    if found is None:
        errors.add(f'Portfolio "{name}" does not exist in EDM "{edm}"')
    return found


def _check_edm_creation(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        server = job.get("server_name", DEFAULT_SERVER_NAME)
        if state.servers is not None and server not in state.servers:
            errors.add(f'Server "{server}" does not exist')
        if state.edms is not None and job["edm_name"] in state.edms:
            errors.add(f'EDM "{job["edm_name"]}" already exists')


def _check_portfolio_creation(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        edm, name = job["edm_name"], job["portfolio_name"]
        if _edm_exists(state, edm, errors) and name in state.portfolios.get(edm, {}):
            errors.add(f'Portfolio "{name}" already exists in EDM "{edm}"')


def _check_mri_import(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        edm = job["edm_name"]
        for key, label in (("account_csv", "Account CSV"), ("location_csv", "Location CSV")):
            if state.files is not None and job[key] not in state.files:
                errors.add(f'{label} file "{job[key]}" does not exist in {state.files_dir}')
        portfolio = _portfolio(state, edm, job["portfolio_name"], errors)
        if portfolio is not None and (portfolio.accounts or portfolio.locations):
            errors.add(
                f'Portfolio "{portfolio.name}" in EDM "{edm}" is not empty '
                f"({portfolio.accounts} accounts, {portfolio.locations} locations)"
            )


def _check_treaties(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        edm, name = job["edm_name"], job["treaty_name"]
        if _edm_exists(state, edm, errors) and name in state.treaties.get(edm, set()):
            errors.add(f'Treaty "{name}" already exists in EDM "{edm}"')


def _check_edm_upgrade(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        edm = job["edm_name"]
        if _edm_exists(state, edm, errors) and not state.portfolios.get(edm):
            errors.add(f'EDM "{edm}" has no portfolios')


def _check_geohaz(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        portfolio = _portfolio(state, job["edm_name"], job["portfolio_name"], errors)
        if portfolio is not None and not portfolio.locations:
            errors.add(f'Portfolio "{portfolio.name}" in EDM "{job["edm_name"]}" has no locations')


def _check_portfolio_mapping(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        edm = job["edm_name"]
        portfolio = _portfolio(state, edm, job["portfolio_name"], errors)
        if portfolio is None:
            continue
        if not portfolio.accounts:
            errors.add(f'Portfolio "{portfolio.name}" in EDM "{edm}" has no accounts')
        for sub in job.get("sub_portfolios") or []:
            if sub in state.portfolios.get(edm, {}):
                errors.add(f'Sub-portfolio "{sub}" already exists in EDM "{edm}"')


def _check_analysis(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors, existing: _Errors
) -> None:
    for job in jobs:
        edm = job["edm_name"]
        _portfolio(state, edm, job["portfolio_name"], errors)
        for treaty in job.get("treaties") or []:
            if edm in state.treaties and treaty not in state.treaties[edm]:
                errors.add(f'Treaty "{treaty}" does not exist in EDM "{edm}"')
        for kind, key in (
            ("model-profiles", "analysis_profile"),
            ("output-profiles", "output_profile"),
            ("event-rate-schemes", "event_rate_scheme"),
        ):
            name = job.get(key)
            if name and kind in state.reference and name not in state.reference[kind]:
                errors.add(f'{REFERENCE_LABELS[kind]} "{name}" does not exist')
        if state.analyses is not None and job["analysis_name"] in state.analyses:
            existing.add(f'Analysis "{job["analysis_name"]}" already exists')


def _check_grouping(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors, existing: _Errors
) -> None:
    # Groups created by this batch (a rollup of a rollup) count as present for its items.
    created_here = {job["group_name"] for job in jobs}
    for job in jobs:
        if state.groups is not None and job["group_name"] in state.groups:
            existing.add(f'Group "{job["group_name"]}" already exists')
        for item in job.get("items") or []:
            name, kind = item["name"], item.get("kind", "analysis")
            if kind == "group":
                if (
                    state.groups is not None
                    and name not in state.groups
                    and name not in created_here
                ):
                    errors.add(f'Group "{name}" does not exist')
            elif state.analyses is not None and name not in state.analyses:
                errors.add(f'Analysis "{name}" does not exist')


def _check_export(
    jobs: Sequence[JobConfiguration], state: RiskModelerState, errors: _Errors
) -> None:
    for job in jobs:
        name = job["entity_name"]
        if job.get("entity_kind") == "group":
            if state.groups is not None and name not in state.groups:
                errors.add(f'Group "{name}" does not exist')
        elif state.analyses is not None and name not in state.analyses:
            errors.add(f'Analysis "{name}" does not exist')
        if (
            job.get("rdm_role", "seed") == "seed"
            and state.rdms is not None
            and job["rdm_name"] in state.rdms
        ):
            errors.add(f'RDM "{job["rdm_name"]}" already exists')


def check_batch(
    batch_type: BatchType | str, jobs: Sequence[JobConfiguration], state: RiskModelerState
) -> EntityValidation:
    """The errors (and, for analyses, the existing entities) of a batch against ``state``."""
    batch_type = BatchType(batch_type)
    errors, existing = _Errors(), _Errors()
    if batch_type == BatchType.ANALYSIS:
        _check_analysis(jobs, state, errors, existing)
    elif batch_type in DECIDED_BATCH_TYPES:
        _check_grouping(jobs, state, errors, existing)
    elif (check := _CHECKS.get(batch_type)) is not None:
        check(jobs, state, errors)
    return EntityValidation(errors=errors.list(), existing=existing.list())


_CHECKS = {
    BatchType.EDM_CREATION: _check_edm_creation,
    BatchType.PORTFOLIO_CREATION: _check_portfolio_creation,
    BatchType.MRI_IMPORT: _check_mri_import,
    BatchType.CREATE_REINSURANCE_TREATIES: _check_treaties,
    BatchType.EDM_DB_UPGRADE: _check_edm_upgrade,
    BatchType.GEOHAZ: _check_geohaz,
    BatchType.PORTFOLIO_MAPPING: _check_portfolio_mapping,
    BatchType.EXPORT_TO_RDM: _check_export,
}

# Batch types whose existing entities wait for the analyst's decision (skip or delete and
# resubmit) instead of failing validation: analyses, and groups of them (seed 003).
DECIDED_BATCH_TYPES = frozenset({BatchType.ANALYSIS, BatchType.GROUPING, BatchType.GROUPING_ROLLUP})


# --------------------------------------------------------------------------- fetching

_NEEDS_PORTFOLIOS = {
    BatchType.PORTFOLIO_CREATION,
    BatchType.MRI_IMPORT,
    BatchType.EDM_DB_UPGRADE,
    BatchType.GEOHAZ,
    BatchType.PORTFOLIO_MAPPING,
    BatchType.ANALYSIS,
}
_NEEDS_TREATIES = {BatchType.CREATE_REINSURANCE_TREATIES, BatchType.ANALYSIS}
_NEEDS_ANALYSES = {
    BatchType.ANALYSIS,
    BatchType.GROUPING,
    BatchType.GROUPING_ROLLUP,
    BatchType.EXPORT_TO_RDM,
}


def _names(jobs: Iterable[JobConfiguration], key: str) -> list[str]:
    return list(dict.fromkeys(str(job[key]) for job in jobs if job.get(key)))


def _analysis_names(batch_type: BatchType, jobs: Sequence[JobConfiguration]) -> list[str]:
    if batch_type == BatchType.ANALYSIS:
        return _names(jobs, "analysis_name")
    if batch_type == BatchType.EXPORT_TO_RDM:
        return _names(jobs, "entity_name")
    names = _names(jobs, "group_name")
    names += [item["name"] for job in jobs for item in job.get("items") or []]
    return list(dict.fromkeys(names))


# EDM listings read at once: a cycle names tens of EDMs, and one after another each costs a
# round trip to the service; more at once would only queue at its rate limit.
EDM_LISTINGS_AT_ONCE = 8


async def _per_edm(
    edms: Sequence[str], listing: Callable[[str], Awaitable[list[dict[str, Any]]]]
) -> dict[str, list]:
    """``listing(edm)`` for every EDM, at most ``EDM_LISTINGS_AT_ONCE`` in flight; in the
    order of ``edms``. The first failure propagates (the validation cannot be trusted)."""
    return dict(zip(edms, await map_bounded(listing, edms, EDM_LISTINGS_AT_ONCE), strict=True))


async def fetch_state(
    batch_type: BatchType | str, jobs: Sequence[JobConfiguration], ctx: HandlerContext
) -> RiskModelerState:
    """Read what ``batch_type``'s rules need: one listing per kind (per EDM for portfolios
    and treaties), only for the EDMs the jobs name."""
    batch_type = BatchType(batch_type)
    client = ctx.client
    state = RiskModelerState()
    if batch_type == BatchType.DATA_EXTRACTION or not jobs:
        return state
    if batch_type == BatchType.EDM_CREATION:
        state.servers = {str(s.get("name")) for s in await client.list_data_servers()}
    if batch_type not in _NEEDS_ANALYSES - {BatchType.ANALYSIS}:
        state.edms = {str(e.get("name")) for e in await client.list_edms()}
    edms = [edm for edm in _names(jobs, "edm_name") if state.edms is None or edm in state.edms]
    if batch_type in _NEEDS_PORTFOLIOS:
        for edm, portfolios in (await _per_edm(edms, client.list_portfolios)).items():
            state.portfolios[edm] = {
                str(p["name"]): PortfolioState(
                    name=str(p["name"]),
                    accounts=int(p.get("accountsCount") or 0),
                    locations=int(p.get("locationsCount") or 0),
                )
                for p in portfolios
            }
    if batch_type in _NEEDS_TREATIES:
        for edm, treaties in (await _per_edm(edms, client.list_treaties)).items():
            state.treaties[edm] = {str(t["name"]) for t in treaties}
    if batch_type == BatchType.MRI_IMPORT:
        directory = Path(ctx.cycle_dir)
        state.files_dir = str(directory)
        state.files = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    if batch_type == BatchType.ANALYSIS:
        for kind, key in (
            ("model-profiles", "analysis_profile"),
            ("output-profiles", "output_profile"),
            ("event-rate-schemes", "event_rate_scheme"),
        ):
            wanted = _names(jobs, key)
            found = await client.list_reference_data(kind, wanted) if wanted else []
            state.reference[kind] = {str(item.get("name")) for item in found}
    if batch_type in _NEEDS_ANALYSES:
        found = await client.list_analyses(names=_analysis_names(batch_type, jobs))
        state.analyses = {str(a["name"]) for a in found if not a.get("isGroup")}
        state.groups = {str(a["name"]) for a in found if a.get("isGroup")}
    if batch_type == BatchType.EXPORT_TO_RDM:
        state.rdms = {str(r.get("name")) for r in await client.list_rdms()}
    return state


async def validate_batch(
    batch_type: BatchType | str, job_configurations: list[dict], ctx: HandlerContext
) -> EntityValidation:
    """Check a batch's jobs against the Risk Modeler's current state (see module docstring)."""
    state = await fetch_state(batch_type, job_configurations, ctx)
    return check_batch(batch_type, job_configurations, state)


# ------------------------------------------------------------- finished jobs' entities
def entity_present(
    batch_type: BatchType | str, job: JobConfiguration, state: RiskModelerState
) -> bool | None:
    """Does the entity a FINISHED job created still exist? None when it cannot be told
    from the state (an upgrade, a geocoding run, a mapping or an export leave no entity of
    their own to look up), in which case the job is never redone on that ground.
    """
    batch_type = BatchType(batch_type)
    edm = job.get("edm_name")
    if batch_type == BatchType.EDM_CREATION and state.edms is not None:
        return edm in state.edms
    if batch_type == BatchType.PORTFOLIO_CREATION and state.edms is not None:
        return job["portfolio_name"] in state.portfolios.get(edm, {})
    if batch_type == BatchType.MRI_IMPORT and state.edms is not None:
        portfolio = state.portfolios.get(edm, {}).get(job["portfolio_name"])
        return portfolio is not None and portfolio.accounts > 0
    if batch_type == BatchType.CREATE_REINSURANCE_TREATIES and state.edms is not None:
        return job["treaty_name"] in state.treaties.get(edm, set())
    if batch_type == BatchType.ANALYSIS and state.analyses is not None:
        return job["analysis_name"] in state.analyses
    if batch_type in (BatchType.GROUPING, BatchType.GROUPING_ROLLUP) and state.groups is not None:
        return job["group_name"] in state.groups
    if batch_type == BatchType.DATA_EXTRACTION and state.files is not None:
        return {job["account_csv"], job["location_csv"]} <= state.files
    return None


async def finished_jobs_missing_their_entity(
    batch_type: BatchType | str, job_configurations: Sequence[JobConfiguration], ctx: HandlerContext
) -> list[str]:
    """Keys of FINISHED jobs whose entity is gone from the service: these are resubmitted."""
    batch_type = BatchType(batch_type)
    if not job_configurations:
        return []
    state = await fetch_state(batch_type, job_configurations, ctx)
    if batch_type == BatchType.DATA_EXTRACTION:
        directory = Path(ctx.cycle_dir)
        state.files = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    return [
        job["key"] for job in job_configurations if entity_present(batch_type, job, state) is False
    ]


# ------------------------------------------------------------- existing entities redone
async def delete_existing(
    batch_type: BatchType | str, job: JobConfiguration, client: RiskModelerClient
) -> int:
    """Delete the existing analysis or group a job would create, so that the job can be
    submitted afresh (the analyst's delete-and-resubmit decision); return how many were
    deleted. Groups live outside EDMs and are deleted through the analysis-groups API."""
    batch_type = BatchType(batch_type)
    if batch_type == BatchType.ANALYSIS:
        found = await client.list_analyses(
            names=[job["analysis_name"]], edm=job["edm_name"], is_group=False
        )
        for analysis in found:
            await client.delete_analysis(analysis["id"])
        return len(found)
    if batch_type in (BatchType.GROUPING, BatchType.GROUPING_ROLLUP):
        found = await client.list_analysis_groups(names=[job["group_name"]])
        for group in found:
            await client.delete_analysis_group(group["id"])
        return len(found)
    raise ValueError(f"{batch_type} has no existing entities to decide on")
