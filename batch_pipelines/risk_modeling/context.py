"""What every Risk Modeler handler is given: the client and where the cycle's data lives.

One object so that handlers of all twelve batch types share one constructor signature and
the family's assets build them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batch_pipelines.clients.risk_modeler import RiskModelerClient


@dataclass(frozen=True)
class HandlerContext:
    client: RiskModelerClient = field(repr=False)
    # The cycle's name, e.g. "202503_Quarterly"; files of the cycle live in data_dir / cycle.
    cycle: str
    data_dir: Path
    # Data Extraction reads this SQL source (SQL Server in production, a SQLite sample by
    # default); Portfolio Mapping runs its SQL against Data Bridge (the simulator's database
    # by default). Both are SQLAlchemy URLs.
    source_database_url: str = field(repr=False)  # URLs may hold passwords
    databridge_url: str = field(repr=False)

    @property
    def cycle_dir(self) -> Path:
        return self.data_dir / self.cycle
