from __future__ import annotations

import pytest

from batch_pipelines_tests.simulators.helpers import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def anyio_backend() -> str:
    # asyncio only: the simulators are served by uvicorn/asyncio and tested the same way.
    return "asyncio"
