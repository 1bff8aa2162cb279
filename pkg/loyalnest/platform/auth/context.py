"""The verified caller of the RPC being handled."""

from __future__ import annotations

from contextvars import ContextVar

from loyalnest.platform.auth.tokens import Principal
from loyalnest.platform.errors import PermissionDenied, Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("loyalnest_principal", default=None)


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


def bind(principal: Principal | None) -> object:
    return _principal.set(principal)


def unbind(token: object) -> None:
    _principal.reset(token)  # type: ignore[arg-type]
