"""Database URLs as users paste them, turned into the form SQLAlchemy needs.

SQLAlchemy 2.1 maps a bare ``postgresql://`` URL to psycopg 3, while dagster-postgres brings
psycopg2; ``postgres://`` (Heroku style) is not recognised at all. Both are normalised to
``postgresql+psycopg2://`` so a URL copied from a PostgreSQL console works as-is.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import URL, make_url

from batch_pipelines.core.errors import ConfigurationError

DEFAULT_SQLITE_PATH = Path(".data") / "batch_pipelines.db"


def normalize_database_url(
    url: str | None,
    *,
    default_path: Path = DEFAULT_SQLITE_PATH,
    what: str = "BATCH_PIPELINES_DATABASE_URL",
) -> URL:
    """Return a SQLAlchemy URL for ``url``; empty means the embedded SQLite file.

    ``what`` names the setting in error messages (the URL itself never appears in them).
    """
    if not url or not url.strip():
        return make_url(f"sqlite:///{default_path}")
    raw = url.strip()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        parsed = make_url(raw)
    except Exception as exc:  # sqlalchemy raises ArgumentError with the URL in it
        raise ConfigurationError(f"{what} is not a database URL ({type(exc).__name__})") from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg2"):
        return parsed.set(drivername="postgresql+psycopg2")
    if parsed.drivername.startswith("sqlite"):
        return parsed
    if parsed.drivername.startswith("postgresql+"):
        # An explicit other driver (psycopg, asyncpg, pg8000): respected if installed.
        return parsed
    raise ConfigurationError(
        f"{what}: unsupported database {parsed.drivername!r}: use sqlite:///PATH or postgresql://..."
    )


_SECRET_QUERY_KEYS = {"password", "pwd", "odbc_connect", "token", "access_token"}


def redacted(url: URL) -> str:
    """The URL with its password hidden, for logs and metadata.

    Passwords can also ride in the query (``mssql+pyodbc:///?odbc_connect=...PWD=...``),
    which SQLAlchemy's own hiding leaves alone: those values are masked too.
    """
    hidden = {k: "***" for k in url.query if k.lower() in _SECRET_QUERY_KEYS}
    return (
        url.update_query_dict(hidden).render_as_string(hide_password=True)
        if hidden
        else url.render_as_string(hide_password=True)
    )
