"""`batch-pipelines docs ...` end to end on a SQLite store and the model simulator."""

from __future__ import annotations

import json

from click.testing import CliRunner

from batch_pipelines.cli import main

TEXT = "Marie Curie studied radioactivity in Paris and won two Nobel Prizes for her research."


def _invoke(*args: str):
    return CliRunner().invoke(main, ["docs", *args], catch_exceptions=False)


def test_a_job_submitted_and_run_from_the_cli_reports_status_results_analytics_and_exports(
    tmp_path,
):
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "papers.jsonl"
    items.write_text(
        "\n".join(json.dumps({"content": f"{TEXT} Paper {i}."}) for i in range(5)) + "\n"
    )

    out = _invoke(
        "submit",
        str(items),
        "--pipeline",
        "document_pipeline",
        "--project",
        "lab",
        "--run",
        "--database-url",
        db,
        "--json",
    )
    assert out.exit_code == 0, out.output
    job = json.loads(out.output)
    assert job["status"] == "COMPLETED" and job["items"] == 5

    status = json.loads(_invoke("status", job["key"], "--database-url", db, "--json").output)
    assert status["progress"]["percent"] == 100.0
    assert float(status["cost"]) > 0 and status["tokens"] > 0
    assert [p["phase"] for p in status["phases"]] == [
        "ocr_extraction",
        "summarization",
        "categorization",
    ]

    rows = json.loads(
        _invoke("results", job["key"], "--database-url", db, "--json", "--limit", "2").output
    )
    assert [r["index"] for r in rows] == [0, 1]
    assert (
        rows[0]["phase_outputs"]["summarization"]
        and rows[0]["output"] == rows[0]["phase_outputs"]["categorization"]
    )

    stats = json.loads(_invoke("analytics", job["key"], "--database-url", db, "--json").output)
    assert set(stats["cost_by_phase"]) == {"ocr_extraction", "summarization", "categorization"}
    assert stats["success_rate"] is not None

    listed = json.loads(
        _invoke(
            "list", "--project", "lab", "--status", "completed", "--database-url", db, "--json"
        ).output
    )
    assert listed["total"] == 1
    assert (
        json.loads(_invoke("list", "--project", "other", "--database-url", db, "--json").output)[
            "total"
        ]
        == 0
    )

    exported = _invoke(
        "export", job["key"], "--format", "xlsx", "--out", str(tmp_path / "x"), "--database-url", db
    )
    assert exported.exit_code == 0 and (tmp_path / "x" / f"{job['key']}.xlsx").exists()


def test_illegal_actions_and_bad_items_are_refused_with_a_clear_message(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "items.csv"
    items.write_text("content,source\nfine text,a\n,b\n")
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline", "--database-url", db],
    )
    assert out.exit_code != 0 and "row 3" in out.output

    items.write_text("content,source\nfine text,a\n")
    out = _invoke(
        "submit",
        str(items),
        "--pipeline",
        "document_pipeline",
        "--no-start",
        "--database-url",
        db,
        "--json",
    )
    key = json.loads(out.output)["key"]
    refused = CliRunner().invoke(main, ["docs", "pause", key, "--database-url", db])
    assert refused.exit_code != 0 and "only a RUNNING job can be paused" in refused.output
    unknown = CliRunner().invoke(
        main, ["docs", "submit", str(items), "--pipeline", "nope", "--database-url", db]
    )
    assert unknown.exit_code != 0 and "unknown pipeline 'nope'" in unknown.output
    assert _invoke("start", key, "--run", "--database-url", db).exit_code == 0
    assert "COMPLETED" in _invoke("status", key, "--database-url", db).output
    assert _invoke("delete", key, "--database-url", db).exit_code == 0


def test_deleting_from_the_cli_also_removes_the_jobs_partition_from_the_dagster_instance(
    tmp_path, monkeypatch
):
    import dagster as dg

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"content": TEXT}) + "\n")
    key = json.loads(
        _invoke(
            "submit",
            str(items),
            "--pipeline",
            "embedding_regeneration",
            "--no-start",
            "--database-url",
            db,
            "--json",
        ).output
    )["key"]
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("embedding_regeneration_jobs", [key])
    out = _invoke("delete", key, "--database-url", db)
    assert out.exit_code == 0 and "removed" in out.output
    with dg.DagsterInstance.get() as instance:
        assert not instance.has_dynamic_partition("embedding_regeneration_jobs", key)


def test_job_options_out_of_range_are_refused_naming_the_option_and_the_value(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"content": TEXT}) + "\n")
    out = CliRunner().invoke(
        main,
        [
            "docs",
            "submit",
            str(items),
            "--pipeline",
            "document_pipeline",
            "--concurrency",
            "0",
            "--database-url",
            f"sqlite:///{tmp_path / 's.db'}",
        ],
    )
    assert out.exit_code != 0
    assert "invalid job options: concurrency:" in out.output and "got 0" in out.output


def test_running_a_job_here_shows_each_phases_progress_with_rate_and_eta(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = tmp_path / "papers.jsonl"
    items.write_text("\n".join(json.dumps({"content": f"{TEXT} {i}."}) for i in range(4)) + "\n")
    out = _invoke(
        "submit", str(items), "--pipeline", "document_pipeline", "--run", "--database-url", db
    )
    assert out.exit_code == 0, out.output
    finals = [line for line in out.output.splitlines() if "4/4 items (100%)" in line]
    assert [line.split(":")[0].strip() for line in finals] == [
        "ocr_extraction",
        "summarization",
        "categorization",
    ]
    assert all("items/s" in line and "ETA" in line for line in finals), out.output


def _items_file(tmp_path, n: int = 1):
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps({"content": f"{TEXT} {i}"}) for i in range(n)) + "\n")
    return items


def _one_line_error(out) -> str:
    """The output of a refused command: one ``Error: [BP-...]`` line, no traceback."""
    assert out.exit_code == 1, out.output
    assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: [BP-"), out.output
    assert "Traceback" not in out.output
    return lines[0]


def test_a_budget_that_is_not_a_number_is_refused_in_one_line_naming_the_option(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    items = _items_file(tmp_path)
    out = CliRunner().invoke(
        main,
        ["docs", "submit", str(items), "--pipeline", "document_pipeline"]
        + ["--budget", "abc", "--database-url", db],
    )
    line = _one_line_error(out)
    assert "--budget 'abc'" in line and ">= 0" in line
    key = json.loads(
        _invoke(
            "submit",
            str(items),
            "--pipeline",
            "document_pipeline",
            "--no-start",
            "--database-url",
            db,
            "--json",
        ).output
    )["key"]
    out = CliRunner().invoke(main, ["docs", "resume", key, "--budget", "abc", "--database-url", db])
    assert "--budget 'abc'" in _one_line_error(out)


def test_a_page_size_above_the_seeds_limit_of_100_is_refused_by_the_cli_and_the_store(tmp_path):
    import pytest

    from batch_pipelines.core.errors import ConfigurationError
    from batch_pipelines.document_ai.store import DocumentJobStore
    from batch_pipelines.store.batch_store import BatchStore

    db = f"sqlite:///{tmp_path / 's.db'}"
    # An out-of-range option is a usage error (exit 2), like `docs results --limit 500`.
    for args in (["--page-size", "500"], ["--page-size", "0"], ["--page", "0"]):
        out = CliRunner().invoke(main, ["docs", "list", *args, "--database-url", db])
        assert out.exit_code == 2 and "Usage:" in out.output, out.output
        assert f"Invalid value for '{args[0]}'" in out.output
    limit = CliRunner().invoke(
        main, ["docs", "results", "x", "--limit", "500", "--database-url", db]
    )
    assert limit.exit_code == 2 and "Invalid value for '--limit'" in limit.output
    assert _invoke("list", "--page-size", "100", "--database-url", db).exit_code == 0
    with pytest.raises(ConfigurationError, match="1-100"):
        DocumentJobStore(BatchStore(db)).list_jobs(limit=500)
