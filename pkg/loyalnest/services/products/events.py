"""What Products tells the mesh, and the consumer group its processes share.

It publishes nothing yet. To announce a change: a payload message in
proto/loyalnest/events/v1/, an `EventSpec` in loyalnest.platform.events.topics, a function
here that builds the payload, and `outbox.enqueue(conn, merchant_id, payload, ...)` in the
store's writing transaction (so the event leaves if and only if the change commits).
"""

from __future__ import annotations

# The consumer group of every Products process: each event is applied by one of them.
CONSUMER_GROUP = "loyalnest.products"
