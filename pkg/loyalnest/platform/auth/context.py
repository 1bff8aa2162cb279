"""The verified caller of the RPC being handled."""

from __future__ import annotations

from contextvars import ContextVar, Token

from loyalnest.platform.auth.tokens import Principal
from loyalnest.platform.errors import PermissionDenied, Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("loyalnest_principal", default=None)
# The caller's own token, forwarded on calls this RPC makes to other services, so they see
# (and check) the same merchant and permissions.
_bearer_token: ContextVar[str | None] = ContextVar("loyalnest_bearer_token", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


def current_merchant_id() -> str:
    """The tenant of the call: always from the verified token, never from the request."""
    merchant_id = current_principal().merchant_id
    if not merchant_id:
        raise PermissionDenied("the access token is not bound to a merchant")
    return merchant_id


def current_bearer_token() -> str | None:
    return _bearer_token.get()


Bound = tuple[Token[Principal | None], Token[str | None]]


def bind(principal: Principal, bearer_token: str) -> Bound:
    return (_principal.set(principal), _bearer_token.set(bearer_token))


def unbind(bound: Bound) -> None:
    principal_reset, token_reset = bound
    _bearer_token.reset(token_reset)
    _principal.reset(principal_reset)
