"""One rule for JSON objects given as text: settings, launchpad fields and CLI options."""

from __future__ import annotations

import pytest

from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines.core.json_values import parse_json_object


def test_a_json_object_is_returned_and_a_missing_one_is_none():
    assert parse_json_object('{"a": 1}', "field") == {"a": 1}
    assert parse_json_object(None, "field") is None and parse_json_object("  ", "field") is None


def test_bad_json_is_refused_naming_the_field_line_and_column():
    with pytest.raises(ConfigurationError) as bad:
        parse_json_object('{\n  "a": nope}', "--configuration-json")
    assert bad.value.message.startswith("--configuration-json: not valid JSON (")
    assert "line 2 column 8" in bad.value.message
    with pytest.raises(
        ConfigurationError, match=r"^\[BP-CONFIG\] prices: must be a JSON object, not list$"
    ):
        parse_json_object("[1]", "prices")


def test_the_document_ai_settings_and_the_resubmit_action_use_the_one_rule():
    from batch_pipelines.batch_actions import jobs
    from batch_pipelines.document_ai.resources import DocumentAISettings

    with pytest.raises(
        ConfigurationError,
        match=r"^\[BP-CONFIG\] document_ai.prices: must be a JSON object, not list$",
    ):
        DocumentAISettings(prices="[1]").price_table()
    with pytest.raises(
        ConfigurationError, match=r"model_routes: not valid JSON \(.* at line 1 column 2\)"
    ):
        DocumentAISettings(model_routes="{nope").router()
    assert not hasattr(jobs, "parse_configuration_json")
