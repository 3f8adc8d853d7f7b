"""The batch-pipelines command, as a user types it."""

from click.testing import CliRunner

from batch_pipelines.cli import main
from batch_pipelines.core.statuses import JobStatus
from batch_pipelines.store.batch_store import JobChange


def test_demo_runs_end_to_end_and_says_where_to_look(tmp_path, monkeypatch):
    # A fresh project folder, as a newcomer has it: no DAGSTER_HOME, no store URL.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("BATCH_PIPELINES_DATABASE_URL", raising=False)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 0, result.output
    assert "EDM Creation after resubmission: batch 1 reconciled COMPLETED" in result.output
    assert "Portfolio Creation: batch 2 reconciled COMPLETED" in result.output
    assert "duplicate acceptances: none" in result.output
    assert "Every part ended as expected." in result.output
    # The demo ran on the project's store, the CLI's default: no hint needs --database-url.
    assert "--database-url" not in result.output
    # It reads like the README: the demo's own lines, no raw Dagster log, every part saying
    # where to look, commands as the README writes them.
    assert " - dagster - " not in result.output
    import re

    parts = re.split(r"\n(\d)\. ", result.output)
    headings = dict(zip(parts[1::2], (p.splitlines()[0] for p in parts[2::2]), strict=True))
    assert list(headings) == ["1", "2", "3", "4", "5", "6", "7"]
    assert headings["5"] == "Document AI"
    for number, text in zip(parts[1::2], parts[2::2], strict=True):
        assert "where to look" in text, f"part {number} does not say where to look"
    # Every family's part shows the standard checks of its assets, as `make dev` has them.
    texts = dict(zip(parts[1::2], parts[2::2], strict=True))
    for number in ("4", "5", "6", "7"):
        assert re.search(r"checks: .*reconciled_completed \d+/\d+ passed", texts[number]), (
            result.output
        )
    assert "reconciled_completed 12/12 passed, nothing_failed 12/12 passed" in texts["4"]
    assert re.search(r"units \d+: \d+ succeeded", texts["5"]), texts["5"]
    assert not re.search(r"(?<!\.venv/bin/)batch-pipelines ", result.output)
    assert "Where to look" in result.output
    _make_dev_shows_what_the_demo_did(tmp_path)


def _make_dev_shows_what_the_demo_did(project):
    """The demo's batches are in the store `make dev` and the CLI read, and its runs,
    materializations and partitions in the instance `make dev` opens (.dagster_home)."""
    import dagster as dg

    from batch_pipelines.configured_batches.group_store import PreferenceGroupStore
    from batch_pipelines.configured_batches.partitions import PREFERENCE_GROUPS
    from batch_pipelines.instance import CODE_LOCATION_NAME
    from batch_pipelines.store.batch_store import BatchStore

    listing = CliRunner().invoke(main, ["batch", "list", "--json"])
    families = {row["family"] for row in __import__("json").loads(listing.output)}
    assert families == {"risk_modeling", "document_ai", "configured_batches", "role_onboarding"}

    store = BatchStore(f"sqlite:///{project / '.data' / 'batch_pipelines.db'}")
    groups = set(PreferenceGroupStore(store.engine).member_counts())
    store.dispose()
    with dg.DagsterInstance.from_config(str(project / ".dagster_home")) as instance:
        # make dev's preference sensor keeps the partitions whose groups the store has.
        assert groups and set(instance.get_dynamic_partitions(PREFERENCE_GROUPS.name)) == groups
        role = instance.get_latest_materialization_event(dg.AssetKey("role_onboarding"))
        assert role is not None
        role_run = instance.get_run_by_id(role.run_id)
        assert role_run.remote_job_origin.location_name == CODE_LOCATION_NAME
        assert instance.get_latest_materialization_event(
            dg.AssetKey(["risk_modeling", "edm_creation"])
        )


def test_batch_status_list_pause_and_resubmit_from_the_command_line(store, database_url):
    batch_id = store.create_batch(
        family="test", batch_type="EDM Creation", job_configurations=[{"key": "a"}]
    )
    store.activate_batch(batch_id)
    job = store.list_jobs(batch_id)[0]
    store.apply_job_changes(
        [JobChange(job.id, JobStatus.INITIATED, JobStatus.ERROR, last_error="boom")]
    )
    runner = CliRunner()
    url = ["--database-url", database_url]
    out = runner.invoke(main, ["batch", "status", str(batch_id), *url])
    assert out.exit_code == 0 and "ERROR" in out.output and "boom" in out.output
    assert (
        runner.invoke(main, ["batch", "pause", str(batch_id), *url])
        .output.strip()
        .endswith("PAUSED")
    )
    listing = runner.invoke(main, ["batch", "list", "--json", *url])
    assert f'"id": {batch_id}' in listing.output
    resub = runner.invoke(main, ["batch", "resubmit", str(job.id), *url])
    assert resub.exit_code == 0 and "resubmitted" in resub.output


def test_an_unknown_batch_is_a_clear_error_not_a_traceback(store, database_url):
    out = CliRunner().invoke(main, ["batch", "status", "987654", "--database-url", database_url])
    assert out.exit_code == 1 and "does not exist" in out.output


def test_every_command_group_reports_a_project_error_with_its_code(store, database_url):
    # Scripts match on the code: the same shape in every group.
    for args in (["batch", "status", "987654"], ["docs", "status", "987654"]):
        out = CliRunner().invoke(main, [*args, "--database-url", database_url])
        assert out.exit_code == 1, out.output
        assert out.output.startswith("Error: [BP-"), out.output
        assert "Traceback" not in out.output


UNREACHABLE = "postgresql://postgres:hunter2@127.0.0.1:9/nowhere"  # port 9: nothing listens


def _one_line_error(out, code: str) -> str:
    assert out.exit_code == 1, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: [{code}]"), out.output
    assert "Traceback" not in out.output and "hunter2" not in out.output
    return lines[0]


def test_an_unreachable_store_is_one_line_naming_the_setting_without_the_password(tmp_path):
    for args in (
        ["batch", "list"],
        ["docs", "list"],
        ["roles", "submit", "--company", "acme", "--role", "Underwriter"],
    ):
        out = CliRunner().invoke(main, [*args, "--database-url", UNREACHABLE])
        line = _one_line_error(out, "BP-STORE")
        assert "BATCH_PIPELINES_DATABASE_URL" in line and "postgres:***@127.0.0.1:9" in line


def test_a_wrong_database_user_is_one_line_saying_so(postgres_url):
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(username="no_such_user_bp").render_as_string(False)
    out = CliRunner().invoke(main, ["batch", "list", "--database-url", url])
    assert 'role "no_such_user_bp" does not exist' in _one_line_error(out, "BP-STORE")


def test_debug_shows_the_traceback_of_a_project_error():
    out = CliRunner().invoke(main, ["--debug", "batch", "list", "--database-url", UNREACHABLE])
    assert out.exit_code == 1
    assert type(out.exception).__name__ == "StoreError"
    assert "hunter2" not in str(out.exception)


def test_a_models_url_with_credentials_is_refused_without_echoing_it(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELS_BASE_URL", "https://bob:hunter2@models.example.invalid/v1")
    reference = tmp_path / "notes.md"
    reference.write_text("Paris is in France.", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    out = CliRunner().invoke(
        main, ["docs", "add-references", "p1", str(reference), "--database-url", url]
    )
    assert "user name or password" in _one_line_error(out, "BP-CONFIG")


def test_an_unexpected_exception_is_one_line_with_credentials_hidden_unless_debugging():
    import click

    from batch_pipelines.cli_options import ErrorReportingGroup, debug_option

    @click.group(cls=ErrorReportingGroup)
    @debug_option
    def top() -> None:
        pass

    @top.command()
    def boom() -> None:
        raise ValueError("bad URL https://bob:hunter2@example.invalid/x\nsecond line")

    out = CliRunner().invoke(top, ["boom"])
    line = _one_line_error(out, "BP-UNEXPECTED")
    assert "ValueError" in line and "https://***@example.invalid/x" in line and "--debug" in line
    debug = CliRunner().invoke(top, ["--debug", "boom"])
    assert isinstance(debug.exception, ValueError)


def test_every_group_answers_dash_h_and_version():
    from importlib.metadata import version

    runner = CliRunner()
    for group in ([], ["batch"], ["docs"], ["jobs"], ["roles"], ["config"], ["simulate"]):
        helped = runner.invoke(main, [*group, "-h"])
        assert helped.exit_code == 0 and "Usage:" in helped.output, group
        versioned = runner.invoke(main, [*group, "--version"])
        assert versioned.exit_code == 0 and version("batch_pipelines") in versioned.output, group
    assert runner.invoke(main, ["docs", "submit", "-h"]).exit_code == 0


def test_batch_list_has_a_header_and_says_when_a_batch_has_no_jobs(store, database_url):
    store.create_batch(family="test", batch_type="Empty", job_configurations=[])
    full = store.create_batch(
        family="test", batch_type="EDM Creation", job_configurations=[{"key": "a"}, {"key": "b"}]
    )
    out = CliRunner().invoke(main, ["batch", "list", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    header, *rows = out.output.strip().splitlines()
    assert header.split() == ["id", "status", "family", "batch", "type", "partition", "jobs"]
    assert "{}" not in out.output and "{'" not in out.output
    (full_row,) = [r for r in rows if r.split()[0] == str(full)]
    assert full_row.rstrip().endswith("2") and "{" not in full_row


def test_paging_options_take_1_to_100_entries(tmp_path):
    url = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
    for args in (
        ["docs", "results", "some-job"],
        ["jobs", "status", "--user", "u1"],
    ):
        for bad in ("0", "101", "-5"):
            out = CliRunner().invoke(main, [*args, "--limit", bad, *url])
            assert out.exit_code == 2 and "1<=x<=100" in out.output, (args, bad, out.output)
    out = CliRunner().invoke(main, ["docs", "results", "some-job", "--offset", "-1", *url])
    assert out.exit_code == 2 and "--offset" in out.output
    ok = CliRunner().invoke(main, ["jobs", "status", "--user", "u1", "--limit", "100", *url])
    assert ok.exit_code == 0, ok.output


def test_a_replacement_configuration_that_is_not_a_json_object_is_a_clear_error(
    store, database_url
):
    for bad, said in (("{bad", "not valid JSON"), ("[1]", "must be a JSON object")):
        out = CliRunner().invoke(
            main,
            ["batch", "resubmit", "1", "--configuration-json", bad, "--database-url", database_url],
        )
        line = _one_line_error(out, "BP-CONFIG")
        assert "--configuration-json" in line and said in line


def test_the_demo_refuses_a_project_whose_store_already_has_batches(tmp_path, monkeypatch):
    """The demo runs on the project's own store: it does not mix into batches already
    there (a second demo would meet the first one's cycle and roles), it says how to
    start fresh."""
    from batch_pipelines.store.batch_store import BatchStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("BATCH_PIPELINES_DATABASE_URL", raising=False)
    (tmp_path / ".data").mkdir()
    store = BatchStore(f"sqlite:///{tmp_path / '.data' / 'batch_pipelines.db'}")
    store.create_batch(family="test", batch_type="EDM Creation", job_configurations=[])
    store.dispose()
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1
    assert (
        result.output.startswith("Error: [BP-DEMO-NOT-FRESH]")
        and "make clean-data" in result.output
    )
    assert result.output.count("\n") == 1


def test_a_command_group_run_on_its_own_without_dagster_home_says_so_in_one_coded_line(
    tmp_path, monkeypatch
):
    """The top-level command always sets DAGSTER_HOME; a group invoked on its own (as
    another click program may embed it) shares one coded error instead."""
    from batch_pipelines.configured_batches.cli import jobs
    from batch_pipelines.role_onboarding.cli import roles

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.delenv("CONFIGURED_JOBS_FILE", raising=False)
    url = ["--database-url", f"sqlite:///{tmp_path / 'store.db'}"]
    for group, args in (
        (jobs, ["run", "user_welcome_notes"]),
        (roles, ["list", "--company", "acme", *url]),
    ):
        line = _one_line_error(CliRunner().invoke(group, args), "BP-CONFIG")
        assert "DAGSTER_HOME is not set" in line
    assert not (tmp_path / ".dagster_home").exists()


# Strings that name the command without being one to run.
NOT_A_PRINTED_COMMAND = {"batch-pipelines docs --run (outside a Dagster run)"}


def _bare_command_strings(root):
    """(file, line, text) of every string literal in ``root`` that names `batch-pipelines
    SUBCOMMAND` other than as .venv/bin/batch-pipelines; docstrings are left out."""
    import ast
    import re

    bare = re.compile(r"(?<![\w/.-])batch-pipelines [a-z-]")
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and node.value not in NOT_A_PRINTED_COMMAND
                and bare.search(node.value)
            ):
                yield f"{path.relative_to(root.parent)}:{node.lineno}: {node.value[:80]!r}"


def test_every_printed_command_hint_reads_as_the_readme_runs_it():
    """Hints are run as printed from the project folder, where the command is
    .venv/bin/batch-pipelines (no activated venv is assumed)."""
    from pathlib import Path

    import batch_pipelines

    assert list(_bare_command_strings(Path(batch_pipelines.__file__).parent)) == []
