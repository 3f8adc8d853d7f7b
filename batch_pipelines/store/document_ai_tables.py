"""Tables of the document ai family.

They hang off the shared metadata of ``schema.py`` (which imports this module, so the
metadata is always complete) and are created by migration 0003.
"""

from __future__ import annotations

import sqlalchemy as sa

from batch_pipelines.store.schema import UTCDateTime, metadata

# Every table of this module, in creation order (migration 0003 creates these).
TABLES: list[sa.Table] = []
