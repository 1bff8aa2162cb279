"""Which merchant a call acts for.

Tenant-scoped RPCs never take the merchant from the request message. The gateway sets
`x-loyalnest-merchant-id` from the verified token and strips any client-sent copy; until token
verification lands in every service (identity issue), direct callers inside the mesh are
trusted to set it.
"""

from __future__ import annotations

from loyalnest.platform.errors import Unauthenticated
from loyalnest.platform.grpctypes import Context
from loyalnest.platform.validation import IDENTIFIER_RE

MERCHANT_HEADER = "x-loyalnest-merchant-id"


def merchant_id(context: Context) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == MERCHANT_HEADER:
            merchant = value.decode() if isinstance(value, bytes) else value
            if IDENTIFIER_RE.match(merchant):
                return merchant
            raise Unauthenticated(f"malformed {MERCHANT_HEADER}")
    raise Unauthenticated(f"no merchant identity on the call ({MERCHANT_HEADER})")
