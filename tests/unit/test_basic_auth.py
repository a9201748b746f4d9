"""HTTP Basic client credentials (RFC 6749 §2.3.1: form-urlencoded, then base64)."""

from __future__ import annotations

import base64

import pytest

from shared.protocol.basic_auth import MAX_HEADER, basic_credentials_header, parse_basic_credentials


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_credentials_are_url_decoded_after_base64():
    assert parse_basic_credentials(basic("rs%3A1%20x:p%C3%A4%3Ass%2F%2B%25")) == (
        "rs:1 x",
        "pä:ss/+%",
    )


def test_the_header_this_module_builds_parses_back_to_the_same_credentials():
    for client_id, secret in [("demo-app", "s3cret"), ("a:b", "c:d e+f%"), ("ü", "")]:
        assert parse_basic_credentials(basic_credentials_header(client_id, secret)) == (
            client_id,
            secret,
        )


def test_the_scheme_is_case_insensitive_and_the_secret_may_hold_colons():
    assert parse_basic_credentials("bAsIc " + basic("id:a:b")[6:]) == ("id", "a:b")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic ",
        "Bearer " + basic("id:secret")[6:],
        basic("no-colon"),
        "Basic not*base64",
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),  # not UTF-8
        "Basic " + "A" * MAX_HEADER,
    ],
)
def test_malformed_headers_are_no_credentials_never_an_exception(header):
    assert parse_basic_credentials(header) == (None, None)
