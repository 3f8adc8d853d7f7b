"""Submissions: invalid roles are reported with where and why, and skipped; the rest go on."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.flags import parse_flag
from batch_pipelines.core.names import UnsafeName
from batch_pipelines.role_onboarding.submission import (
    check_batch_id,
    new_batch_id,
    parse_options,
    partition_key,
    slugify,
    split_partition_key,
    validate_submission,
    workflow_id,
)


def test_the_seeds_example_submission_is_valid_and_keys_roles_by_company_and_slug():
    result = validate_submission(
        "liberty-mutual",
        [
            {"role_name": "Claims Adjuster", "draup_role_name": "Claims Handler"},
            {"role_name": "Underwriter", "draup_role_name": "Insurance Underwriter"},
            {"role_name": "Risk Analyst"},
        ],
        options={"skip_enhancement_workflows": False, "force_rerun": False},
        created_by="admin@company.com",
    )
    assert result.invalid == []
    assert [r.partition_key for r in result.valid] == [
        "liberty-mutual/claims-adjuster",
        "liberty-mutual/underwriter",
        "liberty-mutual/risk-analyst",
    ]
    assert result.valid[0].draup_role_name == "Claims Handler"
    assert result.valid[2].draup_role_name is None


def test_draup_role_id_is_accepted_as_an_alias_of_draup_role_name():
    result = validate_submission(
        "acme", [{"role_name": "Actuary", "draup_role_id": "Pricing Actuary"}]
    )
    assert result.valid[0].draup_role_name == "Pricing Actuary"


def test_invalid_roles_are_skipped_with_their_index_field_and_reason_and_the_rest_go_on():
    result = validate_submission(
        "acme",
        [
            {"role_name": "Actuary"},
            {"role_name": ""},
            "not an object",
            {"role_name": 42},
            {"role_name": "Actuary "},
            {"role_name": "Analyst", "draup_role_name": "A", "draup_role_id": "B"},
            {"role_name": "Analyst", "colour": "red"},
            {"role_name": "!!!"},
            {"role_name": "x" * 201},
            {"role_name": "Data Analyst"},
        ],
    )
    assert [r.role_name for r in result.valid] == ["Actuary", "Data Analyst"]
    assert [(r.index, r.field) for r in result.invalid] == [
        (1, "role_name"),
        (2, "role"),
        (3, "role_name"),
        (4, "role_name"),
        (5, "draup_role_id"),
        (6, "colour"),
        (7, "role_name"),
        (8, "role_name"),
    ]
    assert "same role as roles[0]" in result.invalid[3].reason
    assert str(result.invalid[0]) == "roles[1] role_name: is required"


@pytest.mark.parametrize(
    ("company", "message"),
    [
        ("", "required"),
        (None, "required"),
        ("acme/eu", "company_id 'acme/eu' is not allowed"),
        ("a,b", "is not allowed"),
        ("acme..eu", "is not allowed"),  # the shared name rule: never '..'
        ("acme-", "is not allowed"),  # ends with a letter or digit
        ("../../outside", "is not allowed"),
    ],
)
def test_a_company_id_that_cannot_key_a_partition_is_refused_as_a_whole(company, message):
    with pytest.raises(ConfigurationError, match=message):
        validate_submission(company, [{"role_name": "Actuary"}])


def test_an_empty_role_list_or_a_wrong_option_refuses_the_submission():
    with pytest.raises(ConfigurationError, match="empty"):
        validate_submission("acme", [])
    with pytest.raises(ConfigurationError, match="unknown option"):
        parse_options({"force": True})
    with pytest.raises(ConfigurationError, match="options.force_rerun: must be true or false"):
        parse_options({"force_rerun": "yes"})


def test_batch_ids_are_batch_and_twelve_hex_digits_and_bad_ones_are_refused():
    assert check_batch_id(new_batch_id()).startswith("batch-")
    assert len(new_batch_id()) == len("batch-") + 12
    with pytest.raises(ConfigurationError, match="batch-<12 hex digits>"):
        check_batch_id("batch-XYZ")


def test_workflow_ids_are_stable_for_a_batch_round_and_role_and_differ_otherwise():
    a = workflow_id("batch-000000000001", 1, "acme/actuary")
    assert a == workflow_id("batch-000000000001", 1, "acme/actuary")
    assert a != workflow_id("batch-000000000001", 2, "acme/actuary")
    assert a.startswith("role-onboard-")


def test_the_feature_flag_reads_true_and_false_words_and_refuses_anything_else():
    assert parse_flag(None, name="F", default=True) is True
    assert parse_flag("off", name="F", default=True) is False
    assert parse_flag(" Yes ", name="F", default=False) is True
    with pytest.raises(ConfigurationError, match="F='maybe'"):
        parse_flag("maybe", name="F", default=True)


@given(st.text(min_size=1, max_size=80))
def test_a_role_partition_key_is_always_a_valid_dagster_key_of_company_and_slug(name):
    slug = slugify(name)
    if not slug:
        return
    key = partition_key("acme", name)
    company, role_slug = split_partition_key(key)
    assert company == "acme" and role_slug == slug
    assert all(bad not in key for bad in ["...", ",", "\n", "\t", "\0"])
    assert key.count("/") == 1


@given(st.lists(st.one_of(st.text(max_size=12), st.none(), st.integers()), max_size=30))
def test_every_submitted_role_is_either_valid_or_reported_once(names):
    roles = [{"role_name": n} for n in names]
    if not roles:
        return
    result = validate_submission("acme", roles)
    indexes = sorted([r.index for r in result.valid] + [r.index for r in result.invalid])
    assert indexes == list(range(len(roles)))
    keys = [r.partition_key for r in result.valid]
    assert len(keys) == len(set(keys))


def test_a_company_id_is_checked_by_the_shared_name_rule_and_refused_with_its_code():
    with pytest.raises(UnsafeName) as refused:
        validate_submission("acme..eu", [{"role_name": "Actuary"}])
    assert refused.value.code == "BP-NAME" and "company_id" in str(refused.value)
    assert validate_submission("Liberty Mutual", [{"role_name": "Actuary"}]).valid[
        0
    ].partition_key == ("Liberty Mutual/actuary")


def test_a_role_partition_key_with_an_unsafe_company_is_refused_where_it_is_split():
    with pytest.raises(UnsafeName, match="company_id of the role partition key"):
        split_partition_key("acme..eu/actuary")
