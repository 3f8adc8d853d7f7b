"""The project's instance, store, drop folders and UI address are found the same way by
`make dev`, `make demo` and the CLI (batch_pipelines/instance.py)."""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.instance import (
    INSTANCE_FILES,
    dagster_home,
    prepare_home,
    run_url,
    store_url,
    ui_url,
    use_project_instance,
)

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "batch-pipelines"


def _env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


def test_tests_run_on_their_own_dagster_instance_not_the_projects():
    """`make test` exports the project's .dagster_home; the session fixture in conftest.py
    replaces it, so CLI commands run by tests record nothing in the developer's instance."""
    home = Path(os.environ["DAGSTER_HOME"]).resolve()
    assert home != (ROOT / ".dagster_home").resolve()
    assert not home.is_relative_to(ROOT)
    assert (home / "dagster.yaml").read_text() == INSTANCE_FILES["embedded"].read_text()


def test_dagster_home_defaults_to_dagster_home_in_the_project_folder(tmp_path):
    assert dagster_home({}, tmp_path) == tmp_path.resolve() / ".dagster_home"
    assert dagster_home({"DAGSTER_HOME": "/srv/dagster"}, tmp_path) == Path("/srv/dagster")


def test_the_cli_writes_the_embedded_dagster_yaml_only_where_none_is(tmp_path):
    env: dict[str, str] = {}
    restore = use_project_instance(env, tmp_path)
    home = tmp_path / ".dagster_home"
    assert env["DAGSTER_HOME"] == str(home.resolve())
    assert (home / "dagster.yaml").read_text() == INSTANCE_FILES["embedded"].read_text()
    (home / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    use_project_instance(env, tmp_path)
    assert (home / "dagster.yaml").read_text() == "telemetry: {enabled: false}\n"
    restore()
    assert "DAGSTER_HOME" not in env


def test_a_cli_command_that_needs_the_instance_works_from_the_project_folder_without_dagster_home(
    tmp_path,
):
    """`roles submit` prints `roles status ID --watch` as the next step; that command reads
    the Dagster instance and must work from the project folder as printed."""
    env = _env_without("DAGSTER_HOME", "BATCH_PIPELINES_DATABASE_URL")
    submitted = subprocess.run(
        [str(CLI), "roles", "submit", "--company", "acme", "--role", "Claims Adjuster", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr
    batch_id = json.loads(submitted.stdout)["batch_id"]
    status = subprocess.run(
        [str(CLI), "roles", "status", batch_id, "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["batch_id"] == batch_id
    assert (tmp_path / ".dagster_home" / "dagster.yaml").is_file()


def test_the_follow_up_command_roles_submit_prints_works_as_printed(tmp_path):
    """The hint is run exactly as printed, from a project folder (with its .venv) and
    without DAGSTER_HOME; --watch redraws until the batch settles, so the test reads the
    first status it draws and stops it."""
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    env = _env_without("DAGSTER_HOME", "BATCH_PIPELINES_DATABASE_URL")
    submitted = subprocess.run(
        [str(CLI), "roles", "submit", "--company", "acme", "--role", "Claims Adjuster"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert submitted.returncode == 0, submitted.stderr
    hint = next(
        line.split("follow it:", 1)[1].strip()
        for line in submitted.stdout.splitlines()
        if "follow it:" in line
    )
    batch_id = submitted.stdout.split(":", 1)[0].strip()
    watch = subprocess.Popen(
        shlex.split(hint),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # --watch prints a line only when the batch moves (nothing runs the roles here), so the
    # first lines are read for a bounded time, never waited for without end.
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(
        target=lambda: [lines.put(line) for line in watch.stdout], daemon=True
    )
    reader.start()
    first: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not any(batch_id in line for line in first):
            try:
                first.append(lines.get(timeout=1))
            except queue.Empty:
                if watch.poll() is not None:
                    break
    finally:
        watch.kill()
        watch.wait(timeout=30)
    assert any(batch_id in line for line in first), first
    assert not any("Error" in line for line in first), first


def test_run_links_come_from_one_ui_url_setting():
    assert ui_url({}) == "http://127.0.0.1:3000"
    env = {"BATCH_PIPELINES_UI_URL": "http://0.0.0.0:3917/"}
    assert ui_url(env) == "http://0.0.0.0:3917"
    assert run_url(env, "abc") == "http://0.0.0.0:3917/runs/abc"


def test_the_makefile_derives_the_ui_url_from_host_and_port():
    printed = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "--eval",
            "show-ui-url: ; @echo $$BATCH_PIPELINES_UI_URL",
            "show-ui-url",
            "HOST=0.0.0.0",
            "PORT=3917",
        ],
        cwd=ROOT,
        env=_env_without("BATCH_PIPELINES_UI_URL"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.stdout.strip() == "http://0.0.0.0:3917"
    dry_run = subprocess.run(
        ["make", "-n", "dev", "PORT=3917"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "-h 127.0.0.1 -p 3917" in dry_run.stdout


def test_the_risk_modeling_run_links_use_the_ui_url_setting(monkeypatch, tmp_path):
    from batch_pipelines.definitions import defs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BATCH_PIPELINES_UI_URL", "http://0.0.0.0:3917")
    settings = defs().resources["risk_modeling"]
    assert settings.dagster_url.get_value() == "http://0.0.0.0:3917"


def test_the_store_everything_reads_is_the_setting_or_the_projects_sqlite_file(tmp_path):
    assert store_url({}, tmp_path) == f"sqlite:///{tmp_path.resolve()}/.data/batch_pipelines.db"
    given = {"BATCH_PIPELINES_DATABASE_URL": "postgresql://u@h/db"}
    assert store_url(given, tmp_path) == "postgresql://u@h/db"


def test_building_the_definitions_creates_every_drop_folder(monkeypatch, tmp_path):
    from batch_pipelines.definitions import defs

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ROLE_ONBOARDING_DROP_FOLDER", str(tmp_path / "roles-in"))
    monkeypatch.delenv("DOCUMENT_AI_DROP_FOLDER", raising=False)
    defs()
    assert (tmp_path / ".data" / "risk_modeling" / "incoming").is_dir()
    assert (tmp_path / ".data" / "document_ai" / "incoming").is_dir()
    assert (tmp_path / "roles-in").is_dir()


def test_every_sensor_that_watches_a_folder_has_its_folder_created():
    """The folders created are those of every settings resource with a drop folder: a new
    family's drop folder is created without touching this list."""
    from batch_pipelines.definitions import defs
    from batch_pipelines.drop_folders import drop_folders_of

    assert set(drop_folders_of(defs().resources)) == {
        "document_ai",
        "risk_modeling",
        "role_onboarding_settings",
    }


def test_the_project_folder_has_no_dagster_yaml_that_dagster_would_warn_about():
    assert not (ROOT / "dagster.yaml").exists()
    assert INSTANCE_FILES["embedded"].is_file() and INSTANCE_FILES["postgres"].is_file()


def test_loading_the_definitions_warns_about_nothing_of_the_projects_doing(monkeypatch, tmp_path):
    import warnings

    from batch_pipelines.definitions import defs

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs().get_repository_def()
    assert [str(w.message) for w in caught if "DeprecationWarning" not in w.category.__name__] == []


def test_the_postgres_instance_without_its_url_is_one_line_naming_the_setting(tmp_path):
    with pytest.raises(ConfigurationError, match="needs DAGSTER_POSTGRES_URL"):
        prepare_home(tmp_path / "home", "postgres", {}, replace=True)
    step = subprocess.run(
        [sys.executable, "-m", "batch_pipelines.instance", "postgres"],
        cwd=tmp_path,
        env={**_env_without("DAGSTER_POSTGRES_URL"), "DAGSTER_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert step.returncode == 1
    assert step.stderr.count("\n") == 1 and "DAGSTER_POSTGRES_URL" in step.stderr
    assert not (tmp_path / "home" / "dagster.yaml").exists()


def test_a_new_instance_starts_without_the_run_retry_daemons_no_cursor_warnings(tmp_path, caplog):
    import logging

    import dagster as dg
    from dagster._daemon.auto_run_reexecution.event_log_consumer import (
        DAGSTER_EVENT_TYPES,
        _fetch_persisted_cursors,
    )

    home = tmp_path / "home"
    prepare_home(home, "embedded", {}, replace=True)
    with dg.DagsterInstance.from_config(str(home)) as instance, caplog.at_level(logging.WARNING):
        cursors = _fetch_persisted_cursors(
            instance, DAGSTER_EVENT_TYPES, logging.getLogger("event_log_consumer")
        )
    assert cursors == {t: 0 for t in DAGSTER_EVENT_TYPES}
    assert not [r for r in caplog.records if "No cursor" in r.getMessage()]
    # An existing instance is left alone (its history must not be retried from the start).
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.daemon_cursor_storage.set_cursor_values(
            {f"EVENT_LOG_CONSUMER_CURSOR-{t.value}": "7" for t in DAGSTER_EVENT_TYPES}
        )
    prepare_home(home, "embedded", {}, replace=True)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        kept = instance.daemon_cursor_storage.get_cursor_values(
            {f"EVENT_LOG_CONSUMER_CURSOR-{t.value}" for t in DAGSTER_EVENT_TYPES}
        )
    assert set(kept.values()) == {"7"}
