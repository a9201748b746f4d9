"""Raw Authorization header parsing, fuzzed: the bearer parser of the resource server
(shared/guard/bearer.py) and the Basic parser of client authentication
(shared/protocol/basic_auth.py) take any value and either return well-formed credentials or
fail in their documented way (BearerError; (None, None)), never anything else. The same values
sent to the live services get their documented 400/401, never a 5xx."""

from __future__ import annotations

import base64

import pytest
import requests
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from shared.guard.bearer import (
    _B64TOKEN,
    MAX_TOKEN_LENGTH,
    BearerError,
    challenge_response,
    check_description,
    parse_authorization,
    token_from_request,
)
from shared.protocol.basic_auth import MAX_HEADER, basic_credentials_header, parse_basic_credentials
from tests.fuzz.hypothesis_settings import bounded
from tests.support import DEMO_APP, NOTES_API

pytestmark = pytest.mark.slow

# What a header value can hold on the wire (HTTP/1.1 field-value, decoded as latin-1 by WSGI).
HEADER_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
SCHEMES = st.sampled_from(
    ["Bearer", "bearer", "BEARER", "DPoP", "dpop", "Basic", "basic", "Digest", "", "Bearer\t"]
)
SEPARATORS = st.sampled_from([" ", "  ", "", "\t", " \t "])
TOKENISH = st.one_of(
    st.text(HEADER_CHARS, max_size=60),
    st.from_regex(r"[A-Za-z0-9\-._~+/]{1,40}=*", fullmatch=True),
    st.text(st.sampled_from("A="), min_size=MAX_TOKEN_LENGTH - 2, max_size=MAX_TOKEN_LENGTH + 2),
    st.binary(max_size=40).map(lambda raw: base64.b64encode(raw).decode()),
)
# Any text a client id or secret could be, save lone surrogates (not encodable, never sent).
CREDENTIAL_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
HEADER_VALUES = st.one_of(
    st.none(),
    st.text(max_size=80),
    st.tuples(SCHEMES, SEPARATORS, TOKENISH).map("".join),
    st.tuples(CREDENTIAL_TEXT, CREDENTIAL_TEXT).map(lambda c: basic_credentials_header(*c)),
)
WIRE_VALUES = st.one_of(
    st.tuples(SCHEMES, SEPARATORS, st.text(HEADER_CHARS, max_size=60)).map("".join),
    st.tuples(CREDENTIAL_TEXT, CREDENTIAL_TEXT).map(lambda c: basic_credentials_header(*c)),
    st.text(HEADER_CHARS, max_size=80),
).map(str.strip)  # http.client refuses leading or trailing whitespace in a value


@bounded()
@given(value=HEADER_VALUES)
def test_bearer_parser_returns_a_b64token_or_raises_bearer_error(value):
    try:
        token = parse_authorization(value)
    except BearerError as error:
        assert error.status in (400, 401)
        if error.description is not None:
            check_description(error.description)
        # The challenge for it can always be sent (latin-1 header, JSON body).
        response = challenge_response(error, "tessera")
        response.headers["WWW-Authenticate"].encode("latin-1")
        return
    assert _B64TOKEN.fullmatch(token) and len(token) <= MAX_TOKEN_LENGTH
    assert value.split(" ", 1)[0].lower() == "bearer"


@bounded()
@given(
    value=HEADER_VALUES,
    query=st.lists(st.tuples(st.sampled_from(["access_token", "x"]), st.text(max_size=10))),
    body=st.binary(max_size=60),
    content_type=st.sampled_from(
        ["application/x-www-form-urlencoded", "application/json", "text/plain", None]
    ),
)
def test_token_from_request_raises_only_bearer_error(value, query, body, content_type):
    app = Flask(__name__)
    headers = {"Content-Type": content_type} if content_type else {}
    # Straight into the WSGI environ: werkzeug's test headers refuse what a server never passes
    # on (newlines), and the parser must not rely on that.
    environ = {} if value is None else {"HTTP_AUTHORIZATION": value}
    with app.test_request_context(
        "/",
        method="POST",
        headers=headers,
        query_string=query,
        data=body,
        environ_overrides=environ,
    ) as context:
        try:
            token = token_from_request(context.request)
        except BearerError as error:
            assert error.status in (400, 401)
            return
        assert _B64TOKEN.fullmatch(token)


@bounded()
@given(value=HEADER_VALUES)
def test_basic_parser_returns_credentials_or_nothing(value):
    client_id, secret = parse_basic_credentials(value)
    assert (client_id is None) == (secret is None)
    if client_id is not None:
        assert isinstance(client_id, str) and isinstance(secret, str)
        assert len(value) <= MAX_HEADER


@bounded()
@given(client_id=CREDENTIAL_TEXT, secret=CREDENTIAL_TEXT)
def test_basic_credentials_round_trip(client_id, secret):
    header = basic_credentials_header(client_id, secret)
    if len(header) <= MAX_HEADER:
        assert parse_basic_credentials(header) == (client_id, secret)


def test_authorization_server_answers_any_authorization_header_with_a_4xx(auth):
    """client_secret_basic on the live token and introspection endpoints."""
    right = {basic_credentials_header(*DEMO_APP), basic_credentials_header(*NOTES_API)}
    http = requests.Session()

    @bounded()
    @given(value=WIRE_VALUES, path=st.sampled_from(["/oauth/token", "/oauth/introspect"]))
    def attempt(value, path):
        response = http.post(
            auth.url + path,
            data={"grant_type": "client_credentials", "token": "t"},
            headers={"Authorization": value},
            timeout=10,
        )
        if value in right:
            return
        assert response.status_code in (400, 401), (value, response.status_code, response.text)
        assert response.headers["Cache-Control"] == "no-store"
        assert response.json()["error"] in ("invalid_client", "invalid_request")

    attempt()


def test_notes_api_answers_any_authorization_header_with_a_bearer_or_dpop_challenge(notes_api):
    http = requests.Session()

    @bounded()
    @given(value=WIRE_VALUES)
    def attempt(value):
        response = http.get(notes_api.url + "/api/me", headers={"Authorization": value}, timeout=10)
        assert response.status_code in (400, 401), (value, response.status_code, response.text)
        # RFC 9449 §7.1: a DPoP request gets a DPoP challenge.
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(('Bearer realm="', 'DPoP realm="')), challenge
        assert response.headers["Cache-Control"] == "no-store"

    attempt()
