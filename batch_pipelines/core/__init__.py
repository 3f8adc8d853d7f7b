"""Pure domain logic: no Dagster, no I/O. Everything here is tested directly."""
