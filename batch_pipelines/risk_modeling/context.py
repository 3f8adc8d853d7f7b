"""What every Risk Modeler handler is given: the client and where the cycle's data lives.

One object so that handlers of all twelve batch types share one constructor signature and
the family's assets build them the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from batch_pipelines.clients.risk_modeler import RiskModelerClient
from batch_pipelines.core.names import path_under


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
        """The cycle's folder, refused (``UnsafeName``) if the cycle would lead outside
        ``data_dir``; files in it are placed with ``cycle_file``."""
        return path_under(self.data_dir, self.cycle)

    def cycle_file(self, name: str) -> Path:
        """A file of the cycle, refused if ``name`` would lead outside the cycle's folder."""
        return path_under(self.cycle_dir, name)
