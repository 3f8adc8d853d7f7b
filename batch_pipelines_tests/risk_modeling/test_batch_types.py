from __future__ import annotations

import pytest

from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType


def test_the_twelve_batch_types_are_in_dependency_order_with_the_seeds_display_names():
    assert [bt.value for bt in BATCH_TYPE_ORDER] == [
        "Data Extraction",
        "EDM Creation",
        "Portfolio Creation",
        "MRI Import",
        "Create Reinsurance Treaties",
        "EDM DB Upgrade",
        "GeoHaz",
        "Portfolio Mapping",
        "Analysis",
        "Grouping",
        "Grouping Rollup",
        "Export to RDM",
    ]
    assert list(BatchType) == list(BATCH_TYPE_ORDER)


def test_execution_follows_the_seed_table():
    sync = {bt.value for bt in BatchType if bt.execution == "sync"}
    assert sync == {
        "Data Extraction",
        "Portfolio Creation",
        "Create Reinsurance Treaties",
        "Portfolio Mapping",
    }
    assert all(bt.is_async == (bt.execution == "async") for bt in BatchType)


@pytest.mark.parametrize("batch_type", list(BatchType))
def test_asset_names_are_snake_case_and_round_trip(batch_type):
    name = batch_type.asset_name
    assert name == name.lower() and " " not in name and name.isidentifier()
    assert BatchType.from_asset_name(name) is batch_type


def test_asset_names_are_the_documented_ones():
    assert BatchType.EDM_CREATION.asset_name == "edm_creation"
    assert BatchType.EXPORT_TO_RDM.asset_name == "export_to_rdm"
    assert BatchType("GeoHaz").asset_name == "geohaz"
