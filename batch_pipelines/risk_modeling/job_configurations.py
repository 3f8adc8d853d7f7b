"""Derive the job configurations of every batch type from a master configuration.

A job configuration is the complete, JSON-serializable set of parameters one submission
needs, so that a job can be (re)submitted, audited or overridden without going back to the
workbook. Each carries a ``key`` unique within its batch type (the EDM, portfolio, analysis
or group name; ``"{edm}:{treaty}"`` for treaties) so that batches can be rebuilt
idempotently and jobs matched across resubmissions, and a ``source`` pointing at the
workbook row it came from, so an error at submission can be traced to the cell to fix.

The rules are the issue's "Jobs per batch type":

- one job per base portfolio: Data Extraction, Portfolio Creation, MRI Import, GeoHaz,
  Portfolio Mapping;
- one job per database: EDM Creation, EDM DB Upgrade (target version = major part of the
  EDM Data Version);
- Create Reinsurance Treaties: one per distinct (treaty, database) pair used in the Analysis
  Table, since a treaty lives inside an EDM and must exist in each EDM that applies it;
- Analysis: one per Analysis Table row;
- Grouping: one per group whose items are analyses/portfolios only; Grouping Rollup: one per
  group containing a group; empty groups in neither (nothing to create);
- Export to RDM: one per analysis, then one per (non-empty) group; the first job is the seed
  that creates the RDM, the others join it (``rdm_role`` "seed" / "join", ``seed_key``).

Everything here is pure: the same configuration always gives the same jobs in the same order
(workbook row order).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.models import MasterConfiguration, Portfolio, Treaty

JobConfiguration = dict[str, Any]


def csv_file_names(date_value: str, import_file: str) -> tuple[str, str]:
    """Account and location CSV names written by Data Extraction and read by MRI Import."""
    stem = f"Modeling_{date_value}_Moodys_{import_file}"
    return f"{stem}_Account.csv", f"{stem}_Location.csv"


def build_job_configurations(
    config: MasterConfiguration,
) -> dict[BatchType, list[JobConfiguration]]:
    """Job configurations of all twelve batch types, in dependency order."""
    return {batch_type: _BUILDERS[batch_type](config) for batch_type in BATCH_TYPE_ORDER}


def build_batch_job_configurations(
    config: MasterConfiguration, batch_type: BatchType | str
) -> list[JobConfiguration]:
    """Job configurations of one batch type (what creating its batch needs)."""
    return _BUILDERS[BatchType(batch_type)](config)


def job_counts(config: MasterConfiguration) -> dict[str, int]:
    """Number of jobs per batch type, keyed by the batch type's display name."""
    return {batch_type.value: len(_BUILDERS[batch_type](config)) for batch_type in BATCH_TYPE_ORDER}


# --------------------------------------------------------------------------- builders


def _source(sheet: str, row: int) -> dict[str, Any]:
    return {"sheet": sheet, "row": row}


def _base_portfolio_job(portfolio: Portfolio) -> JobConfiguration:
    return {
        "key": portfolio.name,
        "edm_name": portfolio.database,
        "portfolio_name": portfolio.name,
        "import_file": portfolio.import_file,
        "source": _source("Portfolios", portfolio.row),
    }


def _csv_jobs(config: MasterConfiguration) -> list[JobConfiguration]:
    """Data Extraction writes, and MRI Import reads, the same two CSVs per base portfolio."""
    date_value = config.metadata.current_date_value
    jobs = []
    for portfolio in config.base_portfolios:
        account, location = csv_file_names(date_value, portfolio.import_file)
        jobs.append(
            {
                **_base_portfolio_job(portfolio),
                "date_value": date_value,
                "account_csv": account,
                "location_csv": location,
            }
        )
    return jobs


def _edm_creation(config: MasterConfiguration) -> list[JobConfiguration]:
    return [
        {
            "key": database.name,
            "edm_name": database.name,
            "store_in_data_bridge": database.store_in_data_bridge,
            "source": _source("Databases", database.row),
        }
        for database in config.databases
    ]


def _portfolio_creation(config: MasterConfiguration) -> list[JobConfiguration]:
    return [_base_portfolio_job(portfolio) for portfolio in config.base_portfolios]


def _treaty_fields(treaty: Treaty) -> dict[str, Any]:
    return {
        "treaty_name": treaty.name,
        "treaty_number": treaty.number,
        "treaty_type": treaty.type,
        "per_risk_limit": treaty.per_risk_limit,
        "occurrence_limit": treaty.occurrence_limit,
        "attachment_point": treaty.attachment_point,
        "inception_date": treaty.inception_date.isoformat(),
        "expiration_date": treaty.expiration_date.isoformat(),
        "currency": treaty.currency,
        "attachment_basis": treaty.attachment_basis,
        "exposure_level": treaty.exposure_level,
        "percent_covered": treaty.percent_covered,
        "percent_placed": treaty.percent_placed,
        "percent_share": treaty.percent_share,
        "percent_retention": treaty.percent_retention,
        "premium": treaty.premium,
        "reinstatements": treaty.reinstatements,
        "percent_reinstatement_charge": treaty.percent_reinstatement_charge,
        "aggregate_limit": treaty.aggregate_limit,
        "aggregate_deductible_amount": treaty.aggregate_deductible_amount,
        "inuring_priority": treaty.inuring_priority,
        "producer": treaty.producer,
        "tags": treaty.tags,
    }


def _treaties(config: MasterConfiguration) -> list[JobConfiguration]:
    by_name = {treaty.name: treaty for treaty in config.treaties}
    jobs: list[JobConfiguration] = []
    seen: set[tuple[str, str]] = set()
    for analysis in config.analyses:
        for treaty_name in analysis.treaties:
            pair = (treaty_name, analysis.database)
            if pair in seen:
                continue
            seen.add(pair)
            treaty = by_name[treaty_name]
            jobs.append(
                {
                    "key": f"{analysis.database}:{treaty_name}",
                    "edm_name": analysis.database,
                    **_treaty_fields(treaty),
                    "source": _source("Reinsurance Treaties", treaty.row),
                    "first_used_by": _source("Analysis Table", analysis.row),
                }
            )
    return jobs


def _edm_upgrade(config: MasterConfiguration) -> list[JobConfiguration]:
    metadata = config.metadata
    return [
        {
            "key": database.name,
            "edm_name": database.name,
            "edm_data_version": metadata.edm_data_version,
            "target_edm_version": metadata.edm_major_version,
            "source": _source("Databases", database.row),
        }
        for database in config.databases
    ]


def _geohaz(config: MasterConfiguration) -> list[JobConfiguration]:
    metadata = config.metadata
    thresholds: dict[str, list[dict[str, Any]]] = {}
    for threshold in config.geohaz_thresholds:
        thresholds.setdefault(threshold.import_file, []).append(
            {
                "geocode_level": threshold.geocode_level,
                "percent_of_grand_total": threshold.percent_of_grand_total,
                "threshold_percent": threshold.threshold_percent,
            }
        )
    return [
        {
            **_base_portfolio_job(portfolio),
            "geocode_version": metadata.geocode_version,
            "hazard_version": metadata.hazard_version,
            "thresholds": thresholds.get(portfolio.import_file, []),
        }
        for portfolio in config.base_portfolios
    ]


def _portfolio_mapping(config: MasterConfiguration) -> list[JobConfiguration]:
    """Sub-portfolios of a base portfolio are the non-base portfolios of the same EDM fed by
    the same import file: the mapping SQL carves them out of the base's accounts."""
    store = {database.name: database.store_in_data_bridge for database in config.databases}
    jobs = []
    for portfolio in config.base_portfolios:
        subs = [
            p.name
            for p in config.portfolios
            if not p.is_base
            and p.database == portfolio.database
            and p.import_file == portfolio.import_file
        ]
        jobs.append(
            {
                **_base_portfolio_job(portfolio),
                "date_value": config.metadata.current_date_value,
                "store_in_data_bridge": store.get(portfolio.database, False),
                "sub_portfolios": subs,
            }
        )
    return jobs


def _analysis(config: MasterConfiguration) -> list[JobConfiguration]:
    return [
        {
            "key": analysis.name,
            "analysis_name": analysis.name,
            "edm_name": analysis.database,
            "portfolio_name": analysis.portfolio,
            "analysis_profile": analysis.analysis_profile,
            "output_profile": analysis.output_profile,
            "event_rate_scheme": analysis.event_rate,
            "treaties": list(analysis.treaties),
            "tags": list(analysis.tags),
            "source": _source("Analysis Table", analysis.row),
        }
        for analysis in config.analyses
    ]


def _group_items(config: MasterConfiguration, items) -> list[dict[str, str]]:
    """A group's members as the service groups them: analyses and groups.

    A portfolio item stands for the analyses of that portfolio (the service groups analyses,
    not portfolios); each keeps ``via_portfolio`` so the job still says where it came from.
    """
    by_portfolio: dict[str, list[str]] = {}
    for analysis in config.analyses:
        by_portfolio.setdefault(analysis.portfolio, []).append(analysis.name)
    out: list[dict[str, str]] = []
    for item in items:
        if item.kind == "portfolio":
            out.extend(
                {"name": name, "kind": "analysis", "via_portfolio": item.name}
                for name in by_portfolio.get(item.name, [])
            )
        else:
            out.append({"name": item.name, "kind": item.kind})
    return out


def _group_jobs(config: MasterConfiguration, rollup: bool) -> list[JobConfiguration]:
    return [
        {
            "key": group.name,
            "group_name": group.name,
            "items": _group_items(config, group.items),
            "source": _source("Groupings", group.row),
        }
        for group in config.groupings
        if not group.is_empty and group.contains_group == rollup
    ]


def _grouping(config: MasterConfiguration) -> list[JobConfiguration]:
    return _group_jobs(config, rollup=False)


def _grouping_rollup(config: MasterConfiguration) -> list[JobConfiguration]:
    return _group_jobs(config, rollup=True)


def _export_to_rdm(config: MasterConfiguration) -> list[JobConfiguration]:
    """Exports share one RDM: the first job creates it (seed), the others add to it, so
    they can only start once the seed has finished."""
    rdm_name = config.metadata.export_rdm_name
    entities: list[tuple[str, str, dict[str, Any]]] = [
        (analysis.name, "analysis", _source("Analysis Table", analysis.row))
        for analysis in config.analyses
    ]
    entities += [
        (group.name, "group", _source("Groupings", group.row))
        for group in config.groupings
        if not group.is_empty
    ]
    if not entities:
        return []
    seed_key = entities[0][0]
    return [
        {
            "key": name,
            "rdm_name": rdm_name,
            "entity_name": name,
            "entity_kind": kind,
            "rdm_role": "seed" if index == 0 else "join",
            "seed_key": seed_key,
            "source": source,
        }
        for index, (name, kind, source) in enumerate(entities)
    ]


_BUILDERS: dict[BatchType, Callable[[MasterConfiguration], list[JobConfiguration]]] = {
    BatchType.DATA_EXTRACTION: _csv_jobs,
    BatchType.EDM_CREATION: _edm_creation,
    BatchType.PORTFOLIO_CREATION: _portfolio_creation,
    BatchType.MRI_IMPORT: _csv_jobs,
    BatchType.CREATE_REINSURANCE_TREATIES: _treaties,
    BatchType.EDM_DB_UPGRADE: _edm_upgrade,
    BatchType.GEOHAZ: _geohaz,
    BatchType.PORTFOLIO_MAPPING: _portfolio_mapping,
    BatchType.ANALYSIS: _analysis,
    BatchType.GROUPING: _grouping,
    BatchType.GROUPING_ROLLUP: _grouping_rollup,
    BatchType.EXPORT_TO_RDM: _export_to_rdm,
}
