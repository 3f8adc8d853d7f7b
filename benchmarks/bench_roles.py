"""Placeholder until the family lands."""


def main() -> None:
    raise SystemExit("not written yet")
