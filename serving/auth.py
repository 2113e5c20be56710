"""Bearer-token check of the decision service's admin endpoints.

The token is ``SEXTANT_ADMIN_TOKEN`` (a secret of 16+ characters). Unset, the admin endpoints
are disabled (403 saying how to enable them). A missing or wrong token is 401 with
``WWW-Authenticate: Bearer``; the comparison is ``hmac.compare_digest`` on bytes, whose time does
not depend on where the tokens differ. Neither token is ever logged or echoed.
"""

from __future__ import annotations

from hmac import compare_digest

from fastapi import HTTPException, status
from pydantic import SecretStr

__all__ = ["ADMIN_DISABLED", "check_bearer"]

ADMIN_DISABLED = (
    "admin endpoints are disabled: set SEXTANT_ADMIN_TOKEN (16 or more characters) "
    "and restart the service to enable them"
)


def check_bearer(authorization: str | None, token: SecretStr | None) -> None:
    """Accept the request when ``authorization`` is ``Bearer <token>``; raise otherwise."""
    if token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, ADMIN_DISABLED)
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "admin endpoints need an 'Authorization: Bearer <SEXTANT_ADMIN_TOKEN>' header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the bearer token is not this service's admin token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
