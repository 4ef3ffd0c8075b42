"""The ``Authorization: Bearer <key>`` dependency every ``/v1`` route takes, with the key's rate limit.

A missing, malformed, unknown or revoked key is a 401 with ``WWW-Authenticate:
Bearer`` (RFC 6750); the body says which, never echoing the key. The key is
read from the header only: a key in a query string would land in access logs
and proxies' logs. Each authenticated request then counts against the key's
requests per minute (``limits.RateLimiter``): over it, 429 with ``Retry-After``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .keys import ApiKey, authenticate

if TYPE_CHECKING:
    from .limits import RateLimiter

__all__ = ["bearer_scheme", "require_key", "Caller", "BEARER_CHALLENGE"]

#: The challenge a 401 carries (RFC 6750 section 3).
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="crypto-ml"'}

#: The OpenAPI security scheme "bearer"; auto_error=False so that a missing header is our 401, not FastAPI's 403.
bearer_scheme = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key",
    description="An API key from `crypto-ml apikey create`.",
    auto_error=False,
)


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=message, headers=BEARER_CHALLENGE)


def require_key(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
) -> ApiKey:
    """The caller's API key, checked, and its request counted against its rate limit.

    A plain function: FastAPI runs it in the thread pool, so the database lookup does not block the event loop.

    Raises:
        HTTPException: 401 for a missing, unknown or revoked key; 429 (with ``Retry-After``) over the rate limit.
    """
    if credentials is None:
        header = request.headers.get("authorization")
        if header is None:
            raise _unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        raise _unauthorized("malformed Authorization header: send 'Authorization: Bearer <key>'")
    key = authenticate(request.app.state.ledger, credentials.credentials)
    if key is None:
        raise _unauthorized("unknown or revoked API key; `crypto-ml apikey create` makes a new one")
    request.state.api_key = key
    limiter: RateLimiter = request.app.state.limiter
    limit = key.requests_per_minute or request.app.state.settings.api_requests_per_minute
    # The display prefix too: ids restart at 1 in every database, and two deployments may share one Redis.
    decision = limiter.hit(f"{key.prefix}:{key.id}", limit)
    if not decision.allowed:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"API key {key.name!r} is over its limit of {limit} requests per minute; "
            f"retry in {decision.retry_after} s",
            headers={"Retry-After": str(decision.retry_after)},
        )
    return key


#: A route parameter ``key: Caller`` is the authenticated caller's key.
Caller = Annotated[ApiKey, Depends(require_key)]
