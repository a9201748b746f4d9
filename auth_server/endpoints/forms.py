"""Request checks shared by the form-encoded OAuth endpoints (token, introspect, revoke)."""

from __future__ import annotations

from flask import request

from auth_server.errors import InvalidRequestError

FORM_TYPE = "application/x-www-form-urlencoded"
MAX_TOKEN_LENGTH = 8192


def require_form(repeatable: frozenset[str] = frozenset()) -> None:
    """RFC 6749 §3.2 / Appendix B: a form-encoded POST; §3.1/3.2: no parameter twice."""
    if request.mimetype != FORM_TYPE:
        raise InvalidRequestError(f"The request body must be {FORM_TYPE}.")
    form = request.form
    for key in form:
        if key not in repeatable and len(form.getlist(key)) > 1:
            raise InvalidRequestError(f"The parameter {key} is repeated.")


def token_parameter() -> str:
    token = request.form.get("token")
    if not token:
        raise InvalidRequestError("The token parameter is required.")
    return token
