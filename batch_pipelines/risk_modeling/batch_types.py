"""The twelve risk-modeling batch types, in the order the work depends on.

The values are the display names analysts know from the predecessor system (they appear in
the CLI, in ``job_counts`` and in Teams cards), so they are part of the interface and never
change. Declaration order *is* dependency order: an EDM must exist before its portfolios,
analyses before their groups, groups before the groups that roll them up, and everything
before the RDM export. ``BATCH_TYPE_ORDER`` states that explicitly so callers never rely on
enum iteration by accident.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Execution = Literal["sync", "async"]


class BatchType(StrEnum):
    DATA_EXTRACTION = "Data Extraction"
    EDM_CREATION = "EDM Creation"
    PORTFOLIO_CREATION = "Portfolio Creation"
    MRI_IMPORT = "MRI Import"
    CREATE_REINSURANCE_TREATIES = "Create Reinsurance Treaties"
    EDM_DB_UPGRADE = "EDM DB Upgrade"
    GEOHAZ = "GeoHaz"
    PORTFOLIO_MAPPING = "Portfolio Mapping"
    ANALYSIS = "Analysis"
    GROUPING = "Grouping"
    GROUPING_ROLLUP = "Grouping Rollup"
    EXPORT_TO_RDM = "Export to RDM"

    @property
    def execution(self) -> Execution:
        """Sync calls finish in the request; async ones return a workflow to poll."""
        return _EXECUTION[self]

    @property
    def is_async(self) -> bool:
        return _EXECUTION[self] == "async"

    @property
    def asset_name(self) -> str:
        """Snake-case name used for the Dagster asset of this batch type."""
        return _ASSET_NAMES[self]

    @classmethod
    def from_asset_name(cls, name: str) -> BatchType:
        for batch_type, asset_name in _ASSET_NAMES.items():
            if asset_name == name:
                return batch_type
        raise ValueError(f"no batch type has the asset name {name!r}")


# From the seed's batch type table.
_EXECUTION: dict[BatchType, Execution] = {
    BatchType.DATA_EXTRACTION: "sync",
    BatchType.EDM_CREATION: "async",
    BatchType.PORTFOLIO_CREATION: "sync",
    BatchType.MRI_IMPORT: "async",
    BatchType.CREATE_REINSURANCE_TREATIES: "sync",
    BatchType.EDM_DB_UPGRADE: "async",
    BatchType.GEOHAZ: "async",
    BatchType.PORTFOLIO_MAPPING: "sync",
    BatchType.ANALYSIS: "async",
    BatchType.GROUPING: "async",
    BatchType.GROUPING_ROLLUP: "async",
    BatchType.EXPORT_TO_RDM: "async",
}

_ASSET_NAMES: dict[BatchType, str] = {
    BatchType.DATA_EXTRACTION: "data_extraction",
    BatchType.EDM_CREATION: "edm_creation",
    BatchType.PORTFOLIO_CREATION: "portfolio_creation",
    BatchType.MRI_IMPORT: "mri_import",
    BatchType.CREATE_REINSURANCE_TREATIES: "create_reinsurance_treaties",
    BatchType.EDM_DB_UPGRADE: "edm_db_upgrade",
    BatchType.GEOHAZ: "geohaz",
    BatchType.PORTFOLIO_MAPPING: "portfolio_mapping",
    BatchType.ANALYSIS: "analysis",
    BatchType.GROUPING: "grouping",
    BatchType.GROUPING_ROLLUP: "grouping_rollup",
    BatchType.EXPORT_TO_RDM: "export_to_rdm",
}

BATCH_TYPE_ORDER: tuple[BatchType, ...] = (
    BatchType.DATA_EXTRACTION,
    BatchType.EDM_CREATION,
    BatchType.PORTFOLIO_CREATION,
    BatchType.MRI_IMPORT,
    BatchType.CREATE_REINSURANCE_TREATIES,
    BatchType.EDM_DB_UPGRADE,
    BatchType.GEOHAZ,
    BatchType.PORTFOLIO_MAPPING,
    BatchType.ANALYSIS,
    BatchType.GROUPING,
    BatchType.GROUPING_ROLLUP,
    BatchType.EXPORT_TO_RDM,
)
