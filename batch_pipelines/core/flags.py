"""On/off settings read from environment variables, one rule for all of them."""

from __future__ import annotations

from batch_pipelines.core.errors import ConfigurationError

TRUE_WORDS = frozenset({"1", "true", "yes", "on", "enabled"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", "disabled"})


def parse_flag(value: str | None, *, name: str, default: bool) -> bool:
    """A flag's value; unset or blank is ``default``. An unreadable one is an error naming
    the variable (never a silent default, which would turn a typo into an outage or an
    open gate)."""
    if value is None or not value.strip():
        return default
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigurationError(f"{name}={value!r}: expected true or false")
