"""RFC 6750 header parsing and challenge building, without any server."""

from __future__ import annotations

import json

import pytest
from flask import Flask, request

from shared.guard.bearer import (
    MAX_TOKEN_LENGTH,
    BearerError,
    challenge_response,
    check_description,
    parse_authorization,
    token_from_request,
    www_authenticate,
)

app = Flask(__name__)


def test_bearer_token_is_returned():
    """A well-formed `Bearer <b64token>` header yields the token."""
    assert parse_authorization("Bearer abc-._~+/123==") == "abc-._~+/123=="


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "BeArEr"])
def test_scheme_is_case_insensitive(scheme):
    """RFC 7235 §2.1: the auth-scheme is matched case-insensitively."""
    assert parse_authorization(f"{scheme} tok") == "tok"


@pytest.mark.parametrize("value", [None, "", "Basic dXNlcjpwYXNz", "Digest x", "Bearertok", "tok"])
def test_no_bearer_credentials_get_bare_challenge(value):
    """No header, or another scheme: 401 without error code (RFC 6750 §3.1)."""
    with pytest.raises(BearerError) as caught:
        parse_authorization(value)
    assert (caught.value.status, caught.value.error) == (401, None)


@pytest.mark.parametrize(
    "value",
    [
        "Bearer",
        "Bearer ",
        "Bearer a b",
        'Bearer "tok"',
        "Bearer a,b",
        "Bearer =abc",
        "Bearer ab=c",
        "Bearer tök",
        "Bearer a\tb",
        "Bearer " + "a" * (MAX_TOKEN_LENGTH + 1),
    ],
)
def test_malformed_bearer_credentials_are_invalid_token(value):
    """Not exactly one RFC 6750 §2.1 b64token of at most 8192 chars: 401 invalid_token."""
    with pytest.raises(BearerError) as caught:
        parse_authorization(value)
    assert (caught.value.status, caught.value.error) == (401, "invalid_token")


def test_token_of_exactly_max_length_is_accepted():
    """8192 characters is still allowed."""
    token = "a" * MAX_TOKEN_LENGTH
    assert parse_authorization(f"Bearer {token}") == token


@pytest.mark.parametrize(
    "kwargs",
    [
        {"query_string": "access_token=tok"},
        {"data": "access_token=tok", "content_type": "application/x-www-form-urlencoded"},
    ],
)
def test_token_sent_two_ways_is_invalid_request(kwargs):
    """RFC 6750 §2: header plus access_token parameter is more than one method: 400."""
    with app.test_request_context(
        "/", method="POST", headers={"Authorization": "Bearer tok"}, **kwargs
    ):
        from flask import request

        with pytest.raises(BearerError) as caught:
            token_from_request(request)
    assert (caught.value.status, caught.value.error) == (400, "invalid_request")


def test_unrelated_query_mentioning_access_token_is_fine():
    """Only an `access_token` parameter counts, not the substring in another one."""
    with app.test_request_context("/?q=access_token", headers={"Authorization": "Bearer tok"}):
        assert token_from_request(request) == "tok"


def test_bare_challenge_has_realm_only():
    """The bare challenge is exactly `Bearer realm="..."`."""
    assert www_authenticate("tessera", BearerError.missing()) == 'Bearer realm="tessera"'


def test_insufficient_scope_challenge_lists_scopes():
    """insufficient_scope carries scope= with the required scopes, space-separated."""
    error = BearerError.insufficient_scope("Need more", ["notes:read", "profile"])
    assert www_authenticate("tessera", error) == (
        'Bearer realm="tessera", error="insufficient_scope", error_description="Need more", '
        'scope="notes:read profile"'
    )


def test_challenge_response_is_json_and_no_store():
    """Body has error and error_description, Cache-Control: no-store."""
    response = challenge_response(BearerError.invalid_token("Nope"), "r")
    assert response.status_code == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data()) == {
        "error": "invalid_token",
        "error_description": "Nope",
    }


def test_bare_challenge_body_has_no_error_keys():
    """RFC 6750 §3.1: no error information for a request without credentials."""
    response = challenge_response(BearerError.missing(), "r")
    assert json.loads(response.get_data()) == {}


@pytest.mark.parametrize("text", ['say "hi"', "back\\slash", "tab\there", "né"])
def test_description_with_forbidden_characters_is_refused(text):
    """RFC 6749 §5.2 characters only: a bad description is a programming error, caught early."""
    with pytest.raises(ValueError):
        check_description(text)
    with pytest.raises(ValueError):
        BearerError.invalid_token(text)
