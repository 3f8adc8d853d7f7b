"""Typed form of an Excel master configuration.

These models are what the rest of the family works from once a workbook has been accepted:
job configurations are derived from them, and they are stored as JSON with the cycle. They
are frozen because a configuration is a record of what the analysts asked for; changing it
means loading a new workbook. Every row-based item keeps the Excel ``row`` it came from so
that a later failure (an entity Moody's rejects, a job that errors) can be traced back to
the cell the analyst has to fix.

The models check shapes only; the workbook rules (references, uniqueness, ranges) are
enforced by ``batch_pipelines.risk_modeling.workbook`` where the issue can be pinned to a
sheet, row and column.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metadata(_Model):
    current_date_value: str
    edm_data_version: str
    geocode_version: str
    hazard_version: str
    dlm_model_version: int
    validate_dlm_model_versions: bool
    wildfire_hd_model_version: int
    scs_hd_model_version: int
    inland_flood_hd_model_version: float
    validate_hd_model_versions: bool
    export_rdm_name: str
    cycle_type: str

    @property
    def edm_major_version(self) -> str:
        """EDM DB Upgrade targets the major part of the data version ("23.0.0" -> "23")."""
        return self.edm_data_version.split(".", 1)[0]


class Database(_Model):
    row: int
    name: str
    store_in_data_bridge: bool


class Portfolio(_Model):
    row: int
    name: str
    database: str
    import_file: str
    is_base: bool


class Treaty(_Model):
    row: int
    name: str
    number: str
    type: Literal["Working Excess", "Quota Share"]
    per_risk_limit: float
    occurrence_limit: float
    attachment_point: float
    inception_date: date
    expiration_date: date
    currency: str
    attachment_basis: str
    exposure_level: str
    percent_covered: float
    percent_placed: float
    percent_share: float
    percent_retention: float
    premium: float
    reinstatements: int
    percent_reinstatement_charge: float
    aggregate_limit: float
    aggregate_deductible_amount: float
    inuring_priority: int
    producer: str | None = None
    tags: str | None = None


class GeoHazThreshold(_Model):
    row: int
    geocode_level: str
    import_file: str
    percent_of_grand_total: float
    threshold_percent: float


class Analysis(_Model):
    row: int
    database: str
    portfolio: str
    name: str
    analysis_profile: str
    output_profile: str
    # Blank for HD (high-definition) models, which take no event rate scheme.
    event_rate: str | None
    treaties: tuple[str, ...]
    tags: tuple[str, ...]


GroupItemKind = Literal["analysis", "portfolio", "group"]


class GroupItem(_Model):
    name: str
    kind: GroupItemKind


class Grouping(_Model):
    row: int
    name: str
    items: tuple[GroupItem, ...]

    @property
    def contains_group(self) -> bool:
        return any(item.kind == "group" for item in self.items)

    @property
    def is_empty(self) -> bool:
        return not self.items


class ProductPeril(_Model):
    row: int
    analysis_name: str
    peril: str | None
    product_group: str | None


class ReferenceData(_Model):
    model_profiles: tuple[str, ...]
    output_profiles: tuple[str, ...]
    event_rate_schemes: tuple[str, ...]


class ExposureGroup(_Model):
    row: int
    exposure_group: str
    portname: str


class MasterConfiguration(_Model):
    """One cycle's master configuration, as accepted from its workbook."""

    metadata: Metadata
    databases: tuple[Database, ...]
    portfolios: tuple[Portfolio, ...]
    treaties: tuple[Treaty, ...]
    geohaz_thresholds: tuple[GeoHazThreshold, ...]
    analyses: tuple[Analysis, ...]
    groupings: tuple[Grouping, ...]
    products_and_perils: tuple[ProductPeril, ...]
    reference_data: ReferenceData
    exposure_groups: tuple[ExposureGroup, ...]

    @property
    def base_portfolios(self) -> tuple[Portfolio, ...]:
        return tuple(p for p in self.portfolios if p.is_base)
