"""A Shopify webhook delivered to the edge's gRPC intake, signed as Shopify signs it."""

from __future__ import annotations

import json
from typing import Any

from google.api import httpbody_pb2

from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
from loyalnest.services.edge.signing import shopify_headers


async def deliver_signed(
    edge: edge_pb2_grpc.EdgeServiceStub,
    topic: str,
    payload: dict[str, Any],
    *,
    shop: str,
    secret: str,
) -> None:
    """Delivers `payload` as Shopify's `topic` webhook of `shop`; fails unless accepted."""
    body = json.dumps(payload).encode()
    resource, action = topic.split("/")
    response = await edge.ReceiveWebhook(
        edge_pb2.ReceiveWebhookRequest(
            resource=resource,
            action=action,
            body=httpbody_pb2.HttpBody(content_type="application/json", data=body),
        ),
        metadata=tuple(shopify_headers(body, topic=topic, shop_domain=shop, secret=secret).items()),
    )
    assert response.outcome == edge_pb2.WEBHOOK_OUTCOME_ACCEPTED, response
