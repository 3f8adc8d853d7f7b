"""Jobs per batch type, derived from a configuration built by the workbook builder."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from batch_pipelines.risk_modeling.batch_types import BATCH_TYPE_ORDER, BatchType
from batch_pipelines.risk_modeling.job_configurations import (
    build_batch_job_configurations,
    build_job_configurations,
    csv_file_names,
    job_counts,
)
from batch_pipelines.risk_modeling.sample_workbook import expected_job_counts, valid_workbook
from batch_pipelines.risk_modeling.workbook import load_workbook_configuration

HU = "RM_EDM_202503_Quarterly_USHU"
EQ = "RM_EDM_202503_Quarterly_USEQ"


@pytest.fixture
def jobs(write):
    return build_job_configurations(load_workbook_configuration(write(valid_workbook())))


def keys(jobs, batch_type):
    return [job["key"] for job in jobs[batch_type]]


def test_every_batch_type_has_jobs_in_dependency_order_and_counts_match(jobs, write):
    assert list(jobs) == list(BATCH_TYPE_ORDER)
    assert {bt.value: len(j) for bt, j in jobs.items()} == expected_job_counts(1)
    config = load_workbook_configuration(write(valid_workbook()))
    assert job_counts(config) == expected_job_counts(1)


def test_job_configurations_are_json_serializable_with_keys_unique_per_batch_type(jobs):
    for batch_type, configurations in jobs.items():
        assert json.loads(json.dumps(configurations)) == configurations
        assert len({c["key"] for c in configurations}) == len(configurations), batch_type
        assert all(c["source"]["row"] >= 2 for c in configurations)


def test_base_portfolio_batch_types_have_one_job_per_base_portfolio(jobs):
    for batch_type in (
        BatchType.DATA_EXTRACTION,
        BatchType.PORTFOLIO_CREATION,
        BatchType.MRI_IMPORT,
        BatchType.GEOHAZ,
        BatchType.PORTFOLIO_MAPPING,
    ):
        assert keys(jobs, batch_type) == ["USHU_Full", "USHU_Leak", "USEQ"], batch_type


def test_data_extraction_names_the_account_and_location_csvs_from_date_and_import_file(jobs):
    job = jobs[BatchType.DATA_EXTRACTION][0]

    assert job["account_csv"] == "Modeling_202503_Moodys_USHU_Full_Account.csv"
    assert job["location_csv"] == "Modeling_202503_Moodys_USHU_Full_Location.csv"
    assert jobs[BatchType.MRI_IMPORT][0]["account_csv"] == job["account_csv"]
    assert csv_file_names("202412", "X") == (
        "Modeling_202412_Moodys_X_Account.csv",
        "Modeling_202412_Moodys_X_Location.csv",
    )


def test_edm_creation_and_upgrade_have_one_job_per_database(jobs):
    assert keys(jobs, BatchType.EDM_CREATION) == [HU, EQ]
    assert [j["store_in_data_bridge"] for j in jobs[BatchType.EDM_CREATION]] == [True, False]
    assert keys(jobs, BatchType.EDM_DB_UPGRADE) == [HU, EQ]


def test_edm_upgrade_targets_the_major_part_of_the_edm_data_version(write):
    spec = valid_workbook().set_metadata("EDM Data Version", "25.1.3")

    (job, _) = build_batch_job_configurations(
        load_workbook_configuration(write(spec)), BatchType.EDM_DB_UPGRADE
    )

    assert (job["edm_data_version"], job["target_edm_version"]) == ("25.1.3", "25")


def test_treaties_have_one_job_per_distinct_treaty_and_database_pair_used_by_analyses(jobs):
    assert keys(jobs, BatchType.CREATE_REINSURANCE_TREATIES) == [
        f"{HU}:XPR_1_95",
        f"{HU}:QS_75",
        f"{EQ}:XPR_1_95",
    ]
    xpr = jobs[BatchType.CREATE_REINSURANCE_TREATIES][0]
    assert xpr["edm_name"] == HU
    assert xpr["treaty_type"] == "Working Excess"
    assert xpr["treaty_number"] == "TN-0-1"
    assert xpr["inception_date"] == "2000-01-01"
    assert xpr["percent_placed"] == 95
    assert xpr["occurrence_limit"] == 9_000_000


def test_a_treaty_no_analysis_uses_gets_no_job(write):
    spec = valid_workbook()
    spec.set("Analysis Table", 6, "Reinsurance Treaty 1", None)  # USEQ no longer uses XPR

    config = load_workbook_configuration(write(spec))

    assert job_counts(config)["Create Reinsurance Treaties"] == 2


def test_geohaz_jobs_carry_the_thresholds_of_their_import_file(jobs):
    job = jobs[BatchType.GEOHAZ][2]

    assert job["import_file"] == "USEQ"
    assert [t["geocode_level"] for t in job["thresholds"]] == [
        "Coordinate",
        "Street address",
        "Postcode",
    ]
    assert (job["geocode_version"], job["hazard_version"]) == ("23.0.0", "23.0.0")


def test_portfolio_mapping_lists_the_sub_portfolios_of_each_base(jobs):
    assert [j["sub_portfolios"] for j in jobs[BatchType.PORTFOLIO_MAPPING]] == [
        ["USHU_Full_Other"],
        [],
        ["USEQ_Condo"],
    ]


def test_analysis_has_one_job_per_analysis_table_row(jobs):
    analyses = jobs[BatchType.ANALYSIS]

    assert keys(jobs, BatchType.ANALYSIS) == [
        "USHU_Full_LT",
        "USHU_Full_NT",
        "USHU_Full_Other_LT",
        "USHU_Leak_LT",
        "USEQ",
        "USEQ_Condo",
    ]
    assert analyses[0]["treaties"] == ["XPR_1_95", "QS_75"]
    assert analyses[0]["tags"] == ["202503_Quarterly_USHU_LT"]
    assert analyses[5]["event_rate_scheme"] is None


def test_groups_of_analyses_or_portfolios_are_grouping_groups_of_groups_are_rollups_and_empty_groups_neither(
    jobs,
):
    assert keys(jobs, BatchType.GROUPING) == [
        "202503_USHU_LT_Group",
        "202503_USEQ_Group",
        "202503_USHU_Portfolios_Group",
    ]
    assert keys(jobs, BatchType.GROUPING_ROLLUP) == ["202503_All_Group"]
    assert jobs[BatchType.GROUPING_ROLLUP][0]["items"] == [
        {"name": "202503_USHU_LT_Group", "kind": "group"},
        {"name": "202503_USEQ_Group", "kind": "group"},
        {"name": "USHU_Full_NT", "kind": "analysis"},
    ]


def test_export_to_rdm_seeds_with_the_first_analysis_and_the_rest_join_it(jobs):
    exports = jobs[BatchType.EXPORT_TO_RDM]

    assert keys(jobs, BatchType.EXPORT_TO_RDM) == [
        *keys(jobs, BatchType.ANALYSIS),
        "202503_USHU_LT_Group",
        "202503_USEQ_Group",
        "202503_USHU_Portfolios_Group",
        "202503_All_Group",
    ]
    assert [e["rdm_role"] for e in exports] == ["seed"] + ["join"] * 9
    assert {e["seed_key"] for e in exports} == {"USHU_Full_LT"}
    assert {e["rdm_name"] for e in exports} == {"RM_RDM_202503_QEM_TEST"}
    assert [e["entity_kind"] for e in exports].count("group") == 4


def test_a_portfolio_in_a_group_stands_for_that_portfolios_analyses():
    from batch_pipelines.risk_modeling.job_configurations import build_batch_job_configurations
    from batch_pipelines.risk_modeling.sample_workbook import valid_workbook
    from batch_pipelines.risk_modeling.workbook import load_workbook_configuration

    config = load_workbook_configuration(
        valid_workbook().write(Path(tempfile.mkdtemp()) / "w.xlsx")
    )
    portfolio_groups = [g for g in config.groupings if any(i.kind == "portfolio" for i in g.items)]
    assert portfolio_groups, "the sample workbook has a group of portfolios"
    group = portfolio_groups[0]
    job = next(
        j
        for j in build_batch_job_configurations(config, "Grouping")
        if j["group_name"] == group.name
    )
    portfolios = {i.name for i in group.items if i.kind == "portfolio"}
    expected = [
        a.name
        for p in group.items
        if p.kind == "portfolio"
        for a in config.analyses
        if a.portfolio == p.name
    ]
    assert [i["name"] for i in job["items"] if i.get("via_portfolio")] == expected
    assert {i["via_portfolio"] for i in job["items"] if i.get("via_portfolio")} == portfolios
    assert all(i["kind"] in ("analysis", "group") for i in job["items"])


def test_a_configuration_whose_cycle_would_leave_the_data_folder_gets_no_cycle_name(write):
    from batch_pipelines.core.names import UnsafeName
    from batch_pipelines.risk_modeling.cycle_batches import cycle_name_of

    config = load_workbook_configuration(write(valid_workbook()))
    assert cycle_name_of(config) == "202503_Quarterly"
    # A stored configuration that never went through the workbook's validation.
    unsafe = config.model_copy(
        update={
            "metadata": config.metadata.model_copy(
                update={"cycle_type": "/../../../../../outside/pwn"}
            )
        }
    )
    with pytest.raises(UnsafeName, match="cycle"):
        cycle_name_of(unsafe)
