"""Which merchant a call acts for: always the verified token's, never a request field."""

from __future__ import annotations

from loyalnest.platform.auth.context import current_merchant_id

# The auth interceptor has verified the call's token by the time a handler asks.
merchant_id = current_merchant_id
