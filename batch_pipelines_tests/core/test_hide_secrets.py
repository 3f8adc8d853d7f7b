"""Secrets never reach logs, metadata or errors: ``hide_secrets`` on the texts they come in."""

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batch_pipelines.core.errors import hide_secrets

SECRET = "s3cr3t-VALUE"
# Characters a password or token may hold unencoded; none ends a query value or a URL's
# user information.
SECRET_CHARS = st.text(
    alphabet=string.ascii_letters + string.digits + "@!$%*()-_.~:;=+,", min_size=1, max_size=30
).filter(lambda s: not s.startswith(("=", "@")))


@pytest.mark.parametrize(
    "message",
    [
        f"GET https://api.example.com/v1/x?access_token={SECRET}&page=2 failed",
        f"token refresh refused: client_secret={SECRET}",
        f"api_key={SECRET}",
        f"apikey={SECRET} rejected",
        f"X-Api-Key={SECRET}",
        f"password={SECRET}",
        f"db_password={SECRET}",
        f"refresh-token={SECRET}",
        # A Teams Workflows webhook: its signature is the secret.
        "POST https://prod-01.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/"
        f"invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SECRET} 500",
        f"url signature={SECRET}",
        f"postgresql://app:{SECRET}@db.internal:5432/store unreachable",
        f"mssql+pymssql://app:pa@ss{SECRET}@warehouse:1433/exposure timed out",
        f"https://{SECRET}@example.com/hook",
    ],
)
def test_a_secret_in_a_message_is_hidden(message):
    hidden = hide_secrets(message)
    assert SECRET not in hidden
    assert "***" in hidden


def test_what_is_not_secret_stays_readable():
    hidden = hide_secrets(
        "postgresql://app:pw@db.internal:5432/store?sslmode=require&access_token=x page=2"
    )
    assert (
        hidden == "postgresql://***@db.internal:5432/store?sslmode=require&access_token=*** page=2"
    )


@given(
    name=st.sampled_from(["key", "token", "secret", "password", "sig", "signature"]),
    prefix=st.sampled_from(["", "access_", "client_", "x-", "api-", "API_"]),
    value=SECRET_CHARS.filter(lambda s: "&" not in s),
)
def test_no_part_of_a_secret_parameter_is_shown(name, prefix, value):
    hidden = hide_secrets(f"failed: https://h.example/p?a=1&{prefix}{name}={value}&b=2 done")
    assert hidden == f"failed: https://h.example/p?a=1&{prefix}{name}=***&b=2 done"


@given(
    user=st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=10), password=SECRET_CHARS
)
def test_no_part_of_a_url_password_is_shown_even_with_an_unencoded_at(user, password):
    hidden = hide_secrets(f"cannot connect to postgresql://{user}:{password}@db.internal:5432/x")
    assert hidden == "cannot connect to postgresql://***@db.internal:5432/x"
