from __future__ import annotations

import json

from click.testing import CliRunner

from batch_pipelines.risk_modeling.cli import config
from batch_pipelines.risk_modeling.sample_workbook import expected_job_counts, valid_workbook


def test_validate_exits_0_and_prints_job_counts_for_a_valid_workbook(write):
    path = write(valid_workbook(), "cycle.xlsx")

    result = CliRunner().invoke(config, ["validate", str(path)])

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "cycle.xlsx: valid"
    assert "Export to RDM" in result.output
    total = result.output.splitlines()[-1].split()
    assert total == ["Total", str(sum(expected_job_counts(1).values()))]


def test_validate_exits_1_and_lists_each_issue_as_sheet_row_column_code_message(write):
    spec = (
        valid_workbook()
        .set("Portfolios", 4, "Base Portfolio?", "maybe")
        .delete_metadata("Cycle Type")
    )
    path = write(spec, "cycle.xlsx")

    result = CliRunner().invoke(config, ["validate", str(path)])

    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "cycle.xlsx: invalid, 2 errors",
        "Metadata A: [MISSING_KEY] the key 'Cycle Type' is missing from column A",
        "Portfolios!4 Base Portfolio?: [INVALID_CHOICE] Base Portfolio? must be Y or N, found 'maybe'",
    ]


def test_validate_json_prints_exactly_valid_errors_and_job_counts(write):
    path = write(valid_workbook())

    result = CliRunner().invoke(config, ["validate", str(path), "--json"])

    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload == {"valid": True, "errors": [], "job_counts": expected_job_counts(1)}


def test_validate_json_reports_errors_with_their_location(write):
    path = write(valid_workbook().set("Groupings", 2, "Item2", "Nope"))

    result = CliRunner().invoke(config, ["validate", "--json", str(path)])

    assert result.exit_code == 1
    payload = json.loads(result.output)
    assert payload["valid"] is False
    assert payload["job_counts"] == {}
    assert payload["errors"] == [
        {
            "sheet": "Groupings",
            "row": 2,
            "column": "Item2",
            "code": "UNKNOWN_REFERENCE",
            "message": "Item2 'Nope' is not a portfolio, an analysis or a group from an earlier row",
        }
    ]


def test_a_missing_file_is_a_validation_error_not_a_usage_error(tmp_path):
    result = CliRunner().invoke(config, ["validate", str(tmp_path / "absent.xlsx"), "--json"])

    assert result.exit_code == 1
    assert [e["code"] for e in json.loads(result.output)["errors"]] == ["FILE_NOT_FOUND"]
