"""Tables of the document AI family.

A document job is a batch (family ``document_ai``, batch type = pipeline name) whose work
units are rows of ``items`` with one ``phase_results`` row per item and phase; the job's own
lifecycle (PENDING, RUNNING, PAUSED, ...) and options live in ``document_jobs``. Reference
passages are the per-project documents that ``use_rag`` phases retrieve from.

They hang off the shared metadata of ``schema.py`` (which imports this module, so the
metadata is always complete) and are created by migration 0003.
"""

from __future__ import annotations

import sqlalchemy as sa

from batch_pipelines.store.schema import UTCDateTime, metadata

document_jobs = sa.Table(
    "document_jobs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("batches.id"), nullable=False, unique=True),
    sa.Column("name", sa.String(400), nullable=False),
    sa.Column("project_id", sa.String(200), nullable=False, index=True),
    sa.Column("pipeline", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("options", sa.JSON, nullable=False),
    sa.Column("item_count", sa.Integer, nullable=False),
    # Bumped by every start and resume: the launcher asks for one run per generation.
    sa.Column("generation", sa.Integer, nullable=False, default=0),
    sa.Column("current_phase", sa.String(100)),
    # The process working on the job and until when its claim holds (a killed runner's
    # claim runs out and a new run takes over).
    sa.Column("runner_id", sa.String(100)),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("status_reason", sa.Text),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
)

reference_passages = sa.Table(
    "reference_passages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("project_id", sa.String(200), nullable=False),
    sa.Column("document", sa.String(400), nullable=False),
    sa.Column("passage_index", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("embedding", sa.JSON, nullable=False),
    sa.Column("embedding_model", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint(
        "project_id", "document", "passage_index", name="uq_reference_passages_doc_index"
    ),
    sa.Index("ix_reference_passages_project", "project_id"),
)

# Every table of this module, in creation order (migration 0003 creates these).
TABLES: list[sa.Table] = [document_jobs, reference_passages]
