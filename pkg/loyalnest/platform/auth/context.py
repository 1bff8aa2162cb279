"""The verified caller of the RPC being handled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from loyalnest.platform.auth.tokens import Principal
from loyalnest.platform.errors import PermissionDenied, Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("loyalnest_principal", default=None)
# The caller's own token, forwarded on calls this RPC makes to other services, so they see
# (and check) the same merchant and permissions.
_bearer_token: ContextVar[str | None] = ContextVar("loyalnest_bearer_token", default=None)
# The merchant a service acts for on its own behalf (no caller: a consumer, a job), so its
# outgoing calls carry a service token bound to that merchant.
_acting_merchant: ContextVar[str | None] = ContextVar("loyalnest_acting_merchant", default=None)


def current_principal() -> Principal:
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call needs an access token")
    return principal


def principal_if_any() -> Principal | None:
    """The caller of the RPC being handled, or None outside one (a consumer, a job)."""
    return _principal.get()


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


def acting_merchant() -> str | None:
    return _acting_merchant.get()


@contextmanager
def acting_for(merchant_id: str | None) -> Iterator[None]:
    """Calls made inside (through `open_channel(..., service_tokens=...)`) without a caller's
    token carry this service's token for `merchant_id` (None: for no merchant)."""
    reset = _acting_merchant.set(merchant_id)
    try:
        yield
    finally:
        _acting_merchant.reset(reset)


@contextmanager
def on_own_behalf(merchant_id: str | None) -> Iterator[None]:
    """Like `acting_for`, but also inside an RPC that has a caller: calls made inside carry
    this service's own token for `merchant_id` instead of forwarding the caller's. For calls
    only the service itself may make (a shop's access token, a staff member's role read while
    the caller is someone else)."""
    caller_reset = _bearer_token.set(None)
    try:
        with acting_for(merchant_id):
            yield
    finally:
        _bearer_token.reset(caller_reset)
