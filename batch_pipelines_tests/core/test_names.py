import pytest

from batch_pipelines.core.errors import shorten
from batch_pipelines.core.names import (
    MAX_NAME_LENGTH,
    UnsafeName,
    check_name,
    name_problem,
    path_under,
)


@pytest.mark.parametrize("name", ["Q1", "quarterly_2025", "My paper batch", "acme-corp.eu", "a"])
def test_ordinary_names_are_allowed(name):
    assert check_name(name, "cycle type") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/../../../../../outside/pwn",
        "..",
        "a..b",
        "a/b",
        "a\\b",
        " lead",
        "trail ",
        ".hidden",
        "x\n",
        "a:b",
        "x" * (MAX_NAME_LENGTH + 1),
    ],
)
def test_names_that_could_escape_a_folder_or_break_a_key_are_refused_with_the_rule(name):
    with pytest.raises(UnsafeName) as exc:
        check_name(name, "cycle type")
    assert "cycle type" in str(exc.value)
    assert name_problem(name) is not None


def test_a_refused_name_is_shortened_in_the_message():
    with pytest.raises(UnsafeName) as exc:
        check_name("y" * 100_000, "job name")
    assert len(str(exc.value)) < 400
    assert "100000 characters" in str(exc.value)


def test_paths_under_the_root_are_kept_and_paths_outside_are_refused(tmp_path):
    assert path_under(tmp_path, "cycle", "file.csv") == (tmp_path / "cycle" / "file.csv").resolve()
    with pytest.raises(UnsafeName):
        path_under(tmp_path, "cycle", "../../outside.csv")
    with pytest.raises(UnsafeName):
        path_under(tmp_path, "/etc/passwd")


def test_shorten_keeps_short_values_and_says_the_length_of_long_ones():
    assert shorten("abc") == "'abc'"
    long = shorten("z" * 5000)
    assert len(long) < 120 and "5000 characters" in long
