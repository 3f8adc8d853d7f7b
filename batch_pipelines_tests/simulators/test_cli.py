"""`simulate risk-modeler` serves the simulator over real sockets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from batch_pipelines.simulators.cli import simulate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_risk_modeler_runs_as_a_server_process_and_answers_over_http(tmp_path: Path):
    port = free_port()
    db = tmp_path / "served.sqlite"
    env = {**os.environ, "RISK_MODELER_API_KEY": "served-key"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batch_pipelines.simulators.cli",
            "risk-modeler",
            "--port",
            str(port),
            "--db",
            str(db),
            "--workflow-seconds",
            "0.01",
            "0.01",
            "0.01",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            try:
                httpx.get(f"{base}/_sim/stats", timeout=0.5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "simulator did not start listening"
                time.sleep(0.1)
        answer = httpx.post(
            f"{base}/riskmodeler/v2/datasources",
            params={
                "datasourcename": "EDM_NET",
                "servername": "databridge-1",
                "operation": "CREATE",
            },
            headers={"Authorization": "served-key"},
        )
        assert answer.status_code == 202
        assert answer.headers["location"].startswith("/riskmodeler/v1/workflows/")
        assert httpx.get(f"{base}/riskmodeler/v2/datasources").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert db.exists()


def test_an_impossible_fault_flag_is_a_usage_error_before_anything_starts():
    result = CliRunner().invoke(simulate, ["teams", "--port", "1", "--server-error-rate", "2"])
    assert result.exit_code == 2
    assert "server_error_rate" in result.output


def _served_with_one_edm(db: Path) -> None:
    import asyncio

    from batch_pipelines.simulators.risk_modeler import RiskModelerSimulator
    from batch_pipelines_tests.simulators.helpers import client_for

    async def create() -> None:
        sim = RiskModelerSimulator(db)
        async with client_for(sim.app, Authorization="sim-key") as client:
            answer = await client.post(
                "/riskmodeler/v2/datasources",
                params={
                    "datasourcename": "EDM_OLD",
                    "servername": "databridge-1",
                    "operation": "CREATE",
                },
            )
            assert answer.status_code == 202
        sim.close()

    asyncio.run(create())


def _workflows(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM workflows").fetchone()[0]


def test_serving_with_reset_forgets_the_state_of_earlier_runs(tmp_path: Path, monkeypatch):
    import batch_pipelines.simulators.cli as cli

    db = tmp_path / "served.sqlite"
    _served_with_one_edm(db)
    assert _workflows(db) == 1
    served = []
    monkeypatch.setattr(cli, "serve", lambda app, host, port: served.append(port))

    result = CliRunner().invoke(
        simulate, ["risk-modeler", "--port", "1", "--db", str(db), "--reset"]
    )

    assert result.exit_code == 0, result.output
    assert served == [1] and _workflows(db) == 0


def test_the_reset_command_empties_a_simulators_state_without_serving(tmp_path: Path):
    db = tmp_path / "embedded.db"
    _served_with_one_edm(db)

    result = CliRunner().invoke(simulate, ["reset-risk-modeler", "--db", str(db)])

    assert result.exit_code == 0 and "state reset" in result.output
    assert _workflows(db) == 0
    missing = CliRunner().invoke(
        simulate, ["reset-risk-modeler", "--db", str(tmp_path / "none.db")]
    )
    assert missing.exit_code == 0 and "nothing to reset" in missing.output
    assert not (tmp_path / "none.db").exists()
