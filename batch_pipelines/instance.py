"""Where the project's Dagster instance and its settings live, decided in one place.

`make dev`, `make demo` and the `batch-pipelines` command must read the same Dagster
instance, the same batch store and link to the same UI, or a newcomer sees runs in one and
not the other. The Makefile sets ``DAGSTER_HOME`` to the project folder's ``.dagster_home``
(with the chosen dagster.yaml copied there) and ``BATCH_PIPELINES_UI_URL`` from ``HOST`` and
``PORT``; code run without make (the CLI from the project folder) falls back to the same
values here. Nothing in this module imports Dagster, so the Makefile step that prepares
the instance (``python -m batch_pipelines.instance``) starts quickly.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path

from batch_pipelines.core.errors import ConfigurationError

# The repository folder (an editable install, as `make install` does): the shipped
# dagster.yaml files live under deploy/.
PROJECT_FILES = Path(__file__).resolve().parent.parent
INSTANCE_FILES = {
    "embedded": PROJECT_FILES / "deploy" / "embedded" / "dagster.yaml",
    "postgres": PROJECT_FILES / "deploy" / "postgres" / "dagster.yaml",
}
HOME_FOLDER = ".dagster_home"
# workspace.yaml's location name: runs, sensor cursors and run keys are kept per location
# name, so whatever runs on the project's instance uses this one.
CODE_LOCATION_NAME = "batch_pipelines"
UI_URL_ENV = "BATCH_PIPELINES_UI_URL"
DEFAULT_UI_URL = "http://127.0.0.1:3000"
POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"
STORE_URL_ENV = "BATCH_PIPELINES_DATABASE_URL"
DEFAULT_STORE_PATH = Path(".data") / "batch_pipelines.db"
# The state of the Risk Modeler simulator the code location embeds when no
# RISK_MODELER_BASE_URL is set (RiskModelerResource.simulator_db), and that
# `simulate reset-risk-modeler` resets by default.
EMBEDDED_RISK_MODELER_DB = Path(".data") / "risk_modeler_simulator.db"


def dagster_home(env: Mapping[str, str], cwd: Path) -> Path:
    """``DAGSTER_HOME`` when set, else ``.dagster_home`` in ``cwd`` (the project folder), as
    the Makefile sets it. Absolute, as Dagster requires."""
    given = env.get("DAGSTER_HOME", "").strip()
    return Path(given) if given else (cwd / HOME_FOLDER).resolve()


def ui_url(env: Mapping[str, str]) -> str:
    """The Dagster UI's base URL (no trailing slash) that run links, Teams cards and CLI
    hints are built from: ``BATCH_PIPELINES_UI_URL`` (the Makefile derives it from HOST and
    PORT), else where `make dev` serves by default."""
    return (env.get(UI_URL_ENV, "").strip() or DEFAULT_UI_URL).rstrip("/")


def run_url(env: Mapping[str, str], run_id: str) -> str:
    """The UI page of run ``run_id``."""
    return f"{ui_url(env)}/runs/{run_id}"


def store_url(env: Mapping[str, str], cwd: Path) -> str:
    """The batch store everything in the project folder reads: ``BATCH_PIPELINES_DATABASE_URL``,
    else the embedded SQLite file as an absolute URL (processes started in another folder,
    such as a daemon's run workers, then open the same file)."""
    given = env.get(STORE_URL_ENV, "").strip()
    return given or f"sqlite:///{(cwd / DEFAULT_STORE_PATH).resolve()}"


def missing_instance_settings(kind: str, env: Mapping[str, str]) -> list[str]:
    """The environment variables the ``kind`` instance needs and ``env`` leaves unset."""
    if kind == "postgres" and not env.get(POSTGRES_URL_ENV, "").strip():
        return [POSTGRES_URL_ENV]
    return []


def prepare_home(home: Path, kind: str, env: Mapping[str, str], *, replace: bool) -> Path:
    """Create ``home`` with the ``kind`` instance's dagster.yaml (``embedded`` or
    ``postgres``); an existing file is kept unless ``replace``. A missing setting is one
    ConfigurationError naming it, before Dagster would fail with a config traceback."""
    if kind not in INSTANCE_FILES:
        raise ConfigurationError(
            f"INSTANCE={kind!r} is not an instance of this project: use one of {', '.join(INSTANCE_FILES)}"
        )
    if missing := missing_instance_settings(kind, env):
        raise ConfigurationError(
            f"the {kind} Dagster instance ({INSTANCE_FILES[kind].relative_to(PROJECT_FILES)}) needs "
            f"{', '.join(missing)}, e.g. postgresql://user@host:5432/dagster",
            details={"missing": missing},
        )
    # SQLite instances keep runs (and the daemons' cursors) in history/runs.db.
    new_instance = kind == "embedded" and not (home / "history" / "runs.db").exists()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if replace or not target.is_file():
        shutil.copyfile(INSTANCE_FILES[kind], target)
    if new_instance:
        start_run_retry_cursors(home)
    return target


def start_run_retry_cursors(home: Path) -> None:
    """Start the run-retry daemon's cursors of a brand-new instance at its (empty) event log.

    With run retries on, Dagster's EventLogConsumerDaemon warns "No cursor for event type
    ..., ignoring older events" on its first tick: two warnings on a newcomer's first screen
    about events that cannot exist yet. Only a new instance gets them (on one with history,
    a cursor at the start would retry old failed runs)."""
    import dagster as dg
    from dagster._daemon.auto_run_reexecution.event_log_consumer import DAGSTER_EVENT_TYPES

    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.daemon_cursor_storage.set_cursor_values(
            {f"EVENT_LOG_CONSUMER_CURSOR-{t.value}": "0" for t in DAGSTER_EVENT_TYPES}
        )


def use_project_instance(env: MutableMapping[str, str], cwd: Path) -> Callable[[], None]:
    """Point ``env`` at the project's instance as the Makefile does (``DAGSTER_HOME``
    defaulting to ``cwd/.dagster_home``, its dagster.yaml present: the embedded default
    unless one is there already). Returns how to undo the change to ``env``."""
    before = env.get("DAGSTER_HOME")
    home = dagster_home(env, cwd)
    prepare_home(home, "embedded", env, replace=False)
    env["DAGSTER_HOME"] = str(home)

    def restore() -> None:
        if before is None:
            env.pop("DAGSTER_HOME", None)
        else:
            env["DAGSTER_HOME"] = before

    return restore


def main(argv: list[str]) -> int:
    """``python -m batch_pipelines.instance [embedded|postgres]``: the Makefile's step that
    prepares ``$DAGSTER_HOME`` before `make dev`, `make demo` and `make test`. A problem is
    one line on stderr and exit status 1."""
    kind = argv[0] if argv else "embedded"
    try:
        home = dagster_home(os.environ, Path.cwd())
        prepare_home(home, kind, os.environ, replace=True)
    except ConfigurationError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
