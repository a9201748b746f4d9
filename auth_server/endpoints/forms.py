"""Request checks shared by the form-encoded OAuth endpoints (token, introspect, revoke)."""

from __future__ import annotations

from flask import request

from auth_server.protocol.errors import InvalidRequestError
from shared.guard.bearer import check_description

FORM_TYPE = "application/x-www-form-urlencoded"
# Longer parameter names are not repeated back in an error_description.
MAX_ECHOED_NAME = 64


def require_form(repeatable: frozenset[str] = frozenset()) -> None:
    """RFC 6749 §3.2 / Appendix B: a form-encoded POST; §3.1/3.2: no parameter twice."""
    if request.mimetype != FORM_TYPE:
        raise InvalidRequestError(f"The request body must be {FORM_TYPE}.")
    form = request.form
    for key in form:
        if key not in repeatable and len(form.getlist(key)) > 1:
            raise InvalidRequestError(repeated_parameter_description(key))


def repeated_parameter_description(name: str) -> str:
    """Names the parameter only when RFC 6749 §5.2 allows its characters in error_description:
    any name can be sent, and Authlib refuses to build an error around a forbidden character
    (which was a 500)."""
    if len(name) <= MAX_ECHOED_NAME:
        try:
            return check_description(f"The parameter {name} is repeated.")
        except ValueError:
            pass
    return "A parameter is repeated."


def token_parameter() -> str:
    token = request.form.get("token")
    if not token:
        raise InvalidRequestError("The token parameter is required.")
    return token
