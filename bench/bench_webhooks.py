"""Signed Shopify orders/create webhooks through Envoy to the edge service, against a bare
baseline, in one run.

    .venv/bin/python bench/bench_webhooks.py [--rate 500] [--concurrency 64] [--duration 10]
                                             [--warmup 3] [--workers 1] [--clients 1]
                                             [--tracing/--no-tracing] [--broker/--no-broker]
                                             [--pg-durable] [--json]

Starts a throwaway PostgreSQL, Valkey and tansu (Kafka-protocol broker), then, one after the
other, two targets behind a real Envoy running the gateway config our code generates:

1. baseline: a bare `grpc.aio` server implementing EdgeService/ReceiveWebhook that answers at
   once (no interceptors, no verification, no storage);
2. the real edge service (`loyalnest.platform.server.running`, production defaults): HMAC
   verification, Redis dedupe, idempotency key + outbox row in one PostgreSQL transaction,
   the outbox relay publishing to the broker.

Each target gets an open-loop phase (a fixed offered rate, latency measured from each send's
scheduled time) and a closed-loop phase (N concurrent senders, peak throughput), driven by the
same HTTP client processes (aiohttp, keep-alive) with the same kind of ~3 KB signed deliveries.
Then the edge run is checked: every response 200, one idempotency key and one outbox row per
accepted delivery, every event on the broker. See README.md.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import signal
import sys
import time
import traceback
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
from harness import (
    READY_TIMEOUT_SECONDS,
    CpuCounter,
    ServerProcess,
    binary_process,
    cpu_percent,
    descendants,
    exit_on_sigterm,
    percentile,
    postmaster_pid,
    server_process,
    stop_event,
    stop_process,
    throwaway_postgres,
    throwaway_root,
    valkey_server,
)

TOPIC = "orders/create"
GOAL_P99_MS = 100.0
GOAL_PEAK_PER_SECOND = 1000.0
REQUEST_TIMEOUT_SECONDS = 10.0
# Envoy's admin API and the servers' own addresses are loopback: never through a proxy.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Several shops, as an app installed in many stores sees them (each shop is a merchant).
SHOPS = tuple(f"bench-shop-{i:02d}.myshopify.com" for i in range(16))
ACCEPTED = b"WEBHOOK_OUTCOME_ACCEPTED"
DUPLICATE = b"WEBHOOK_OUTCOME_DUPLICATE"


# ------------------------------------------------------------------------ the webhook payloads

# A small catalogue: (product id, variant id, title, variant, sku, price, grams, vendor).
# fmt: off
PRODUCTS = (
    (8123400001, 45012300001, "Merino Beanie", "Grey", "BEANIE-GRY", "30.00", 120, "Northwind"),
    (8123400002, 45012300002, "Trail Socks", "M", "SOCK-TRL-M", "24.00", 210, "Northwind"),
    (8123400003, 45012300003, "Down Vest", "Navy / L", "VEST-NVY-L", "149.00", 540, "Alpine"),
    (8123400004, 45012300004, "Canvas Tote", "Natural", "TOTE-NAT", "38.00", 300, "Fieldhouse"),
    (8123400005, 45012300005, "Bottle 750 ml", "Sage", "BTL-750-SGE", "32.50", 410, "Brook"),
    (8123400006, 45012300006, "Rain Shell", "Black / M", "JKT-BLK-M", "189.00", 620, "Alpine"),
    (8123400007, 45012300007, "Wool Gloves", "Charcoal", "GLV-CHR", "42.00", 95, "Northwind"),
    (8123400008, 45012300008, "Camp Mug", "White", "MUG-WHT", "18.00", 280, "Brook"),
)
# fmt: on
FIRST_NAMES = ("Ada", "Grace", "Alan", "Katherine", "Linus", "Margaret", "Edsger", "Barbara")
LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Dijkstra")
PLACES = (
    ("123 Elm Street", "Portland", "Oregon", "OR", "United States", "US", "97205"),
    ("48 Rue de Rivoli", "Paris", "Ile-de-France", "IDF", "France", "FR", "75004"),
    ("77 King St W", "Toronto", "Ontario", "ON", "Canada", "CA", "M5K 1A1"),
    ("9 Harbour Road", "Cork", "Cork", "CO", "Ireland", "IE", "T12 X2Y3"),
    ("500 Congress Ave", "Austin", "Texas", "TX", "United States", "US", "78701"),
)

# Placeholders in a template: `"@@n@@"` becomes the bare number of slot n (a JSON number),
# `##n##` inside a string becomes its digits. Filling them is a join of pre-split chunks, so a
# unique delivery costs the client a few microseconds, not a JSON encoding.
_SLOT_RE = re.compile(rb'"@@(\d+)@@"|##(\d+)##')
SLOT_ORDER, SLOT_CHECKOUT, SLOT_CODE, SLOT_NUMBER, SLOT_CUSTOMER, SLOT_ADDRESS = range(6)
SLOT_LINES = 6  # line items from here, then the shipping line
SLOT_STRIDE = 16  # > the number of slots in any template
ID_BASE = 5_900_000_000_000  # Shopify-sized (13-digit) ids


def _num(slot: int) -> str:
    return f"@@{slot}@@"


def _money(amount: float, currency: str) -> dict[str, Any]:
    value = f"{amount:.2f}"
    return {
        "shop_money": {"amount": value, "currency_code": currency},
        "presentment_money": {"amount": value, "currency_code": currency},
    }


def _address(rng: random.Random, first: str, last: str) -> dict[str, Any]:
    street, city, province, province_code, country, country_code, zip_code = rng.choice(PLACES)
    return {
        "first_name": first,
        "last_name": last,
        "address1": street,
        "address2": rng.choice(("", "Apt 4B", "Suite 210")),
        "city": city,
        "province": province,
        "province_code": province_code,
        "country": country,
        "country_code": country_code,
        "zip": zip_code,
        "phone": f"+1415555{rng.randrange(1000, 9999)}",
    }


def order_template(rng: random.Random) -> dict[str, Any]:
    """A real-looking orders/create payload (fields as in Shopify's Admin API webhooks) with
    placeholders for the ids that make each delivery unique."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first.lower()}.{last.lower()}{rng.randrange(100)}@example.com"
    currency = "USD"
    tax_rate = rng.choice((0.0725, 0.0825, 0.13, 0.2))
    discount = rng.choice((5.0, 10.0, 15.0))
    address = _address(rng, first, last)
    items = rng.sample(PRODUCTS, rng.choice((1, 1, 2, 2, 3)))
    line_items: list[dict[str, Any]] = []
    subtotal = 0.0
    for index, (product, variant, title, variant_title, sku, price, grams, vendor) in enumerate(
        items
    ):
        quantity = rng.choice((1, 1, 2, 3))
        line_total = float(price) * quantity
        subtotal += line_total
        share = discount * line_total  # normalised below, once the subtotal is known
        line_items.append(
            {
                "id": _num(SLOT_LINES + index),
                "fulfillment_status": None,
                "gift_card": False,
                "grams": grams,
                "name": f"{title} - {variant_title}",
                "price": price,
                "product_id": product,
                "quantity": quantity,
                "sku": sku,
                "taxable": True,
                "title": title,
                "total_discount": "0.00",
                "variant_id": variant,
                "variant_title": variant_title,
                "vendor": vendor,
                "tax_lines": [
                    {"price": f"{line_total * tax_rate:.2f}", "rate": tax_rate, "title": "Tax"}
                ],
                "discount_allocations": [{"amount": share, "discount_application_index": 0}],
            }
        )
    for item in line_items:
        item["discount_allocations"][0]["amount"] = (
            f"{item['discount_allocations'][0]['amount'] / subtotal:.2f}"
        )
    shipping = rng.choice((0.0, 5.0, 9.95))
    tax = (subtotal - discount) * tax_rate
    total = subtotal - discount + tax + shipping
    created = (
        f"2026-11-{rng.randrange(10, 28)}T{rng.randrange(10, 23)}:{rng.randrange(10, 59)}:07-05:00"
    )
    code = f"LOYAL-##{SLOT_CODE}##"
    return {
        "id": _num(SLOT_ORDER),
        "admin_graphql_api_id": f"gid://shopify/Order/##{SLOT_ORDER}##",
        "app_id": 580111,
        "browser_ip": f"203.0.113.{rng.randrange(1, 254)}",
        "buyer_accepts_marketing": rng.random() < 0.5,
        "checkout_id": _num(SLOT_CHECKOUT),
        "confirmation_number": "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=9)),
        "confirmed": True,
        "contact_email": email,
        "created_at": created,
        "currency": currency,
        "customer_locale": "en-US",
        "discount_codes": [{"code": code, "amount": f"{discount:.2f}", "type": "fixed_amount"}],
        "email": email,
        "financial_status": "paid",
        "fulfillment_status": None,
        "name": f"###{SLOT_NUMBER}##",
        "note": None,
        "note_attributes": [{"name": "loyalty_member", "value": "true"}],
        "order_number": _num(SLOT_NUMBER),
        "payment_gateway_names": ["shopify_payments"],
        "presentment_currency": currency,
        "processed_at": created,
        "source_name": "web",
        "subtotal_price": f"{subtotal - discount:.2f}",
        "tags": "",
        "tax_lines": [{"price": f"{tax:.2f}", "rate": tax_rate, "title": "Tax"}],
        "taxes_included": False,
        "test": False,
        "total_discounts": f"{discount:.2f}",
        "total_line_items_price": f"{subtotal:.2f}",
        "total_price": f"{total:.2f}",
        "total_tax": f"{tax:.2f}",
        "total_weight": sum(item["grams"] * item["quantity"] for item in line_items),
        "updated_at": created,
        "billing_address": address,
        "customer": {
            "id": _num(SLOT_CUSTOMER),
            "admin_graphql_api_id": f"gid://shopify/Customer/##{SLOT_CUSTOMER}##",
            "email": email,
            "first_name": first,
            "last_name": last,
            "orders_count": rng.randrange(1, 12),
            "state": "enabled",
            "total_spent": f"{total * rng.randrange(1, 6):.2f}",
            "verified_email": True,
            "tax_exempt": False,
            "tags": rng.choice(("", "vip", "loyalty-member")),
            "currency": currency,
            "created_at": "2025-03-02T09:12:00-05:00",
            "default_address": {
                "id": _num(SLOT_ADDRESS),
                "customer_id": _num(SLOT_CUSTOMER),
                **address,
                "default": True,
            },
        },
        "discount_applications": [
            {
                "target_type": "line_item",
                "type": "discount_code",
                "value": f"{discount:.1f}",
                "value_type": "fixed_amount",
                "allocation_method": "across",
                "target_selection": "all",
                "code": code,
            }
        ],
        "line_items": line_items,
        "shipping_address": address,
        "shipping_lines": [
            {
                "id": _num(SLOT_LINES + len(line_items)),
                "code": "Standard",
                "price": f"{shipping:.2f}",
                "discounted_price": f"{shipping:.2f}",
                "source": "shopify",
                "title": "Standard Shipping",
            }
        ],
        "refunds": [],
        "fulfillments": [],
    }


@dataclass(frozen=True)
class Template:
    chunks: tuple[bytes, ...]  # one more than slots
    slots: tuple[int, ...]

    @classmethod
    def compile(cls, order: dict[str, Any]) -> Template:
        parts = _SLOT_RE.split(json.dumps(order, separators=(",", ":")).encode())
        # re.split with two groups: chunk, number-slot, string-slot, chunk, ...
        chunks = tuple(parts[0::3])
        slots = tuple(int(a or b) for a, b in zip(parts[1::3], parts[2::3], strict=True))
        return cls(chunks, slots)

    def fill(self, values: Sequence[bytes]) -> bytes:
        pieces = [self.chunks[0]]
        for slot, chunk in zip(self.slots, self.chunks[1:], strict=True):
            pieces.append(values[slot])
            pieces.append(chunk)
        return b"".join(pieces)


class DeliveryFactory:
    """Unique signed orders/create deliveries: new order, customer, address, line item,
    shipping line and discount code ids, a new X-Shopify-Event-Id and X-Shopify-Webhook-Id
    each time. Client `index` of `clients` never produces another client's ids."""

    def __init__(self, secret: str, index: int, clients: int, seed: int, variants: int = 64):
        rng = random.Random(seed)
        self._templates = [Template.compile(order_template(rng)) for _ in range(variants)]
        self._secret = secret.encode()
        self._index = index
        self._clients = clients
        self._seq = 0

    def next(self) -> tuple[bytes, dict[str, str]]:
        n = self._seq * self._clients + self._index
        self._seq += 1
        base = ID_BASE + n * SLOT_STRIDE
        values = [str(base + slot).encode() for slot in range(SLOT_STRIDE)]
        values[SLOT_NUMBER] = str(1001 + n).encode()
        body = self._templates[n % len(self._templates)].fill(values)
        digest = hmac.new(self._secret, body, hashlib.sha256).digest()
        # The headers Shopify sends (as loyalnest.services.edge.signing.shopify_headers).
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Hmac-SHA256": base64.b64encode(digest).decode(),
            "X-Shopify-Topic": TOPIC,
            "X-Shopify-Shop-Domain": SHOPS[n % len(SHOPS)],
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
            "X-Shopify-API-Version": "2025-10",
        }
        return body, headers


def payload_sizes(secret: str, count: int = 256) -> list[int]:
    factory = DeliveryFactory(secret, 0, 1, seed=1)
    return sorted(len(factory.next()[0]) for _ in range(count))


# ------------------------------------------------------------------------------ the client


@dataclass(frozen=True)
class Phase:
    kind: str  # "open" (fixed rate, timetable) or "closed" (N concurrent senders)
    url: str
    start_at: float  # time.monotonic() (CLOCK_MONOTONIC: the same clock in every process)
    warmup: float
    duration: float
    rate: float = 0.0  # open: total deliveries per second over all clients
    concurrency: int = 0  # closed: total concurrent senders over all clients

    @property
    def measure_from(self) -> float:
        return self.start_at + self.warmup

    @property
    def measure_until(self) -> float:
        return self.measure_from + self.duration


@dataclass
class ClientResult:
    latencies: bytes = b""  # array('d') of seconds, measured deliveries
    send_lags: bytes = b""  # open loop: actual send time - scheduled time, measured deliveries
    measured: int = 0  # deliveries counted in the window (any outcome)
    accepted_measured: int = 0
    last_completion: float = 0.0  # monotonic time the last measured delivery completed
    # Every delivery of the phase, warm-up included (the correctness check counts these).
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # HTTP status -> count
    outcomes: Counter[str] = field(default_factory=Counter)  # of the 200s
    errors: Counter[str] = field(default_factory=Counter)  # exceptions (timeouts, resets)
    first_failure: str = ""
    # X-Shopify-Event-Id of every accepted delivery (newline-separated): the check looks
    # each one up in PostgreSQL.
    accepted_ids: bytes = b""


class Sender:
    """Sends deliveries on one aiohttp session and keeps the phase's tallies."""

    def __init__(self, session: Any, url: str, phase: Phase) -> None:
        self._session = session
        self._url = url
        self._phase = phase
        self.result = ClientResult()
        self._latencies = array.array("d")
        self._lags = array.array("d")
        self._accepted_ids: list[str] = []

    async def send(self, body: bytes, headers: dict[str, str], reference: float | None) -> float:
        """One delivery. Latency counts from `reference` (the scheduled time, open loop) or
        from the send (closed loop). Returns when it completed."""
        result = self.result
        started = time.monotonic()
        status = 0
        payload = b""
        try:
            async with self._session.post(self._url, data=body, headers=headers) as response:
                payload = await response.read()
                status = response.status
        except Exception as exc:  # timeouts and resets are results here, not crashes
            result.errors[type(exc).__name__] += 1
            if not result.first_failure:
                result.first_failure = repr(exc)
        finished = time.monotonic()
        result.sent += 1
        accepted = False
        if status:
            result.statuses[status] += 1
            if status == 200:
                outcome = (
                    "accepted"
                    if ACCEPTED in payload
                    else "duplicate"
                    if DUPLICATE in payload
                    else "other"
                )
                result.outcomes[outcome] += 1
                accepted = outcome == "accepted"
                if accepted:
                    self._accepted_ids.append(headers["X-Shopify-Event-Id"])
            elif not result.first_failure:
                result.first_failure = f"HTTP {status}: {payload[:300]!r}"
        phase = self._phase
        if reference is None:  # closed loop: what completed inside the window
            counted = phase.measure_from <= finished <= phase.measure_until
            reference = started
        else:  # open loop: what was scheduled inside the window, whenever it completed
            counted = reference >= phase.measure_from
            if counted:
                self._lags.append(started - reference)
        if counted:
            result.measured += 1
            if accepted:
                result.accepted_measured += 1
                self._latencies.append(finished - reference)
            result.last_completion = max(result.last_completion, finished)
        return finished

    def finish(self) -> ClientResult:
        self.result.latencies = self._latencies.tobytes()
        self.result.send_lags = self._lags.tobytes()
        self.result.accepted_ids = "\n".join(self._accepted_ids).encode()
        return self.result


async def _open_loop(
    sender: Sender, factory: DeliveryFactory, phase: Phase, index: int, clients: int
) -> None:
    """Sends on a timetable: delivery g (over all clients) is due at start + g / rate, and
    its latency counts from then, so a stall shows in the latencies of everything scheduled
    behind it instead of pausing the load (no coordinated omission)."""
    interval = 1.0 / phase.rate
    tasks: set[asyncio.Task[float]] = set()
    g = index
    while True:
        scheduled = phase.start_at + g * interval
        if scheduled >= phase.measure_until:
            break
        body, headers = factory.next()  # prepared before its time comes
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(sender.send(body, headers, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        g += clients
    if tasks:
        await asyncio.gather(*tasks)


async def _closed_loop(
    sender: Sender, factory: DeliveryFactory, phase: Phase, workers: int
) -> None:
    async def worker() -> None:
        while True:
            body, headers = factory.next()
            if await sender.send(body, headers, None) >= phase.measure_until:
                return

    await asyncio.sleep(max(0.0, phase.start_at - time.monotonic()))
    await asyncio.gather(*(worker() for _ in range(workers)))


async def _run_phase(
    phase: Phase, factory: DeliveryFactory, index: int, clients: int
) -> ClientResult:
    import aiohttp

    if phase.kind == "closed":
        workers = phase.concurrency // clients + (1 if index < phase.concurrency % clients else 0)
        limit = max(1, workers)
    else:
        workers = 0
        limit = 1024  # open loop: as many connections as deliveries in flight
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:
        sender = Sender(session, phase.url, phase)
        if phase.kind == "closed":
            if workers:
                await _closed_loop(sender, factory, phase, workers)
        else:
            await _open_loop(sender, factory, phase, index, clients)
        return sender.finish()


def client_process(conn: Connection, index: int, clients: int, secret: str, seed: int) -> None:
    """Child process entry point: runs the phases the parent sends, returns their results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # plain asyncio: the client costs more CPU (the table shows it)
        loop_factory = None
    factory = DeliveryFactory(secret, index, clients, seed)
    conn.send(("ok", os.getpid()))
    while True:
        try:
            phase = conn.recv()
        except EOFError:  # the parent is gone
            return
        if phase is None:
            return
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                reply: tuple[str, Any] = (
                    "ok",
                    runner.run(_run_phase(phase, factory, index, clients)),
                )
        except BaseException as exc:
            reply = ("error", "".join(traceback.format_exception(exc)))
        try:
            conn.send(reply)
        except OSError:  # the parent stopped (Ctrl-C) while this phase ran
            return
        if reply[0] != "ok":
            return


@dataclass
class Clients:
    """The client processes: started once, driven phase by phase."""

    processes: list[Any]
    conns: list[Connection]
    pids: list[int]

    def start(self, phase: Phase) -> None:
        for conn in self.conns:
            conn.send(phase)

    def collect(self, phase: Phase) -> list[ClientResult]:
        results = []
        deadline = phase.measure_until + REQUEST_TIMEOUT_SECONDS + 30
        for conn in self.conns:
            if not conn.poll(max(1.0, deadline - time.monotonic())):
                raise RuntimeError("a client process did not report its results")
            status, detail = conn.recv()
            if status != "ok":
                raise RuntimeError(f"client process failed:\n{detail}")
            results.append(detail)
        return results


@contextlib.contextmanager
def client_processes(count: int, secret: str, seed: int) -> Iterator[Clients]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes, conns, pids = [], [], []
    try:
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(child_end, index, count, secret, seed),
                daemon=True,
                name=f"bench-client-{index}",
            )
            process.start()
            child_end.close()
            processes.append(process)
            conns.append(parent_end)
        for conn in conns:
            if not conn.poll(READY_TIMEOUT_SECONDS):
                raise RuntimeError("a client process did not start")
            status, pid = conn.recv()
            if status != "ok":
                raise RuntimeError(f"client process failed to start: {pid}")
            pids.append(int(pid))
        yield Clients(processes, conns, pids)
    finally:
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for process in processes:
            process.join(2)
            stop_process(process)


# ---------------------------------------------------------------------------- server processes


def baseline_server_process(ready: Connection) -> None:
    """Child process entry point: a bare grpc.aio server with EdgeService/ReceiveWebhook
    answering at once (and grpc.health.v1, which Envoy's health checks need)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        asyncio.run(_baseline_main(ready))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None


async def _baseline_main(ready: Connection) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]

    from loyalnest.gen.edge.v1 import edge_pb2, edge_pb2_grpc
    from loyalnest.services.edge.service import SERVICE_NAME

    # As large as the edge's answer (the event id is a UUID), so the transcoder's work on the
    # way back is the same.
    response = edge_pb2.ReceiveWebhookResponse(
        outcome=edge_pb2.WEBHOOK_OUTCOME_ACCEPTED, topic=TOPIC, shopify_event_id=str(uuid.uuid4())
    )

    class BareEdge(edge_pb2_grpc.EdgeServiceServicer):
        async def ReceiveWebhook(  # noqa: N802 - the gRPC method's name
            self, request: edge_pb2.ReceiveWebhookRequest, context: Any
        ) -> edge_pb2.ReceiveWebhookResponse:
            return response

    stop, watchdog = stop_event()
    server = grpc.aio.server()
    edge_pb2_grpc.add_EdgeServiceServicer_to_server(BareEdge(), server)  # type: ignore[no-untyped-call]
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    for name in ("", SERVICE_NAME):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ready.send(("ok", f"127.0.0.1:{port}"))
    await stop.wait()
    await server.stop(1.0)
    await watchdog


def edge_server_process(ready: Connection, settings: dict[str, Any], profile: str | None) -> None:
    """Child process entry point: the real edge service, until SIGTERM.

    With `profile`, its event-loop thread runs under cProfile (slower: read the profile for
    where the time goes, not the throughput of that run) and the stats are written there.
    """
    import cProfile

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The main thread's CPU time, not wall time: on a shared machine wall time also counts
    # the moments the process waited for a core, and the Kafka threads' CPU stays out.
    profiler = cProfile.Profile(time.thread_time) if profile else None
    try:
        if profiler is not None:
            profiler.enable()
        asyncio.run(_edge_main(ready, settings))
    except BaseException as exc:
        with contextlib.suppress(OSError):
            ready.send(("error", "".join(traceback.format_exception(exc))))
        raise SystemExit(1) from None
    finally:
        if profiler is not None and profile:
            profiler.disable()
            profiler.dump_stats(profile)


async def _edge_main(ready: Connection, values: dict[str, Any]) -> None:
    from loyalnest.platform.observability import configure_logging
    from loyalnest.platform.server import running
    from loyalnest.services.edge.service import SPEC
    from loyalnest.services.edge.settings import EdgeSettings

    settings = EdgeSettings(**values)
    configure_logging(settings, SPEC.name)
    stop, watchdog = stop_event()
    async with running(SPEC, settings) as service:
        await asyncio.wait_for(service.health.started.wait(), READY_TIMEOUT_SECONDS)
        ready.send(("ok", service.address))
        await stop.wait()
    await watchdog


def edge_settings(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    """Production defaults (interceptors, tracing, metrics, pool size, dedupe TTL, relay
    settings), with this run's addresses and secret; only logging is quieter."""
    return {
        "grpc_port": 0,
        "metrics_enabled": True,
        "metrics_port": 0,
        "database_url": env.database_url,
        "redis_url": env.redis_url,
        "jwt_jwks_path": str(env.jwks_path),
        "shopify_api_secret": env.secret,
        "events_enabled": env.kafka is not None,
        "kafka_bootstrap_servers": env.kafka or "127.0.0.1:9092",
        "tracing_enabled": args.tracing,
        "otel_exporter_otlp_endpoint": None,
        "access_log": False,
        "shutdown_grace_seconds": 2.0,
        "log_level": "WARNING",
        "log_format": "console",
    }


# -------------------------------------------------------------------------------- the gateway


def _http_get(url: str, timeout: float = 2.0) -> str:
    with _NO_PROXY.open(url, timeout=timeout) as reply:
        return str(reply.read().decode())


def _healthy_endpoints(admin_url: str, cluster: str) -> int:
    try:
        text = _http_get(f"{admin_url}/clusters")
    except OSError:
        return -1
    return sum(
        line.startswith(f"{cluster}::") and "health_flags::healthy" in line
        for line in text.splitlines()
    )


@dataclass
class Gateway:
    url: str
    admin_url: str
    pid: int

    def rate_limit_checks(self) -> int:
        """Calls Envoy's ratelimit filter made to the rate-limit service: its per-cluster
        counters (`cluster.<c>.ratelimit.ok/over_limit/error/...`) appear on first use."""
        total = 0
        with contextlib.suppress(OSError):
            for line in _http_get(f"{self.admin_url}/stats?filter=ratelimit").splitlines():
                name, _, value = line.partition(": ")
                if ".ratelimit." in name and value.strip().isdigit():
                    total += int(value)
        return total


@contextlib.contextmanager
def envoy_gateway(
    root: Path, name: str, endpoints: Sequence[str], jwks_path: Path
) -> Iterator[Gateway]:
    """Envoy with the gateway config our code generates for the edge (as the tests and the
    local stack do: JWT, admin allowlist, rate limits via the edge, body limit, transcoder),
    the edge upstream's endpoints being `endpoints`; returns once all of them are healthy."""
    from loyalnest.devstack.postgres import free_port
    from loyalnest.gateway import GatewayConfig, Upstream, write
    from loyalnest.gateway.edge import LOOPBACK_CIDRS, EdgePolicy, JwtProvider
    from loyalnest.gateway.envoy_binary import envoy_command
    from loyalnest.gateway.reflection import DEFAULT_DESCRIPTOR_SET
    from loyalnest.platform.config import ServiceSettings
    from loyalnest.services.edge.service import SERVICE_NAME

    hosts = []
    for address in endpoints:
        host, _, port = address.rpartition(":")
        hosts.append((host, int(port)))
    config = GatewayConfig(
        listen_port=free_port(),
        admin_port=free_port(),
        descriptor_set_path=DEFAULT_DESCRIPTOR_SET,
        upstreams=(Upstream("edge", (SERVICE_NAME,), tuple(hosts)),),
        # Access log on, to a file, as the local stack runs it.
        access_log_path=str(root / f"envoy-access-{name}.log"),
        policy=EdgePolicy(
            jwt=JwtProvider(jwks_path, ServiceSettings().jwt_issuer),
            admin_allowed_cidrs=LOOPBACK_CIDRS,
            rate_limit_upstream="edge",
        ),
    )
    path = write(config, root / f"envoy-{name}.json")
    admin_url = f"http://127.0.0.1:{config.admin_port}"
    with binary_process(
        envoy_command(path),
        root / f"envoy-{name}.log",
        lambda: _healthy_endpoints(admin_url, "edge") == len(endpoints),
        "envoy",
    ) as process:
        yield Gateway(f"http://127.0.0.1:{config.listen_port}", admin_url, process.pid)


def envoy_version() -> str:
    import subprocess

    from loyalnest.gateway.envoy_binary import find_envoy

    with contextlib.suppress(Exception):
        out = subprocess.run(
            [str(find_envoy()), "--version"], capture_output=True, text=True, timeout=30
        ).stdout
        match = re.search(r"/(\d+\.\d+\.\d+)/", out)
        if match:
            return match.group(1)
    return "?"


# ---------------------------------------------------------------------------------- the phases


@dataclass
class Environment:
    root: Path
    secret: str
    jwks_path: Path
    database_url: str
    pg_data_dir: Path
    redis_url: str
    redis_pid: int
    kafka: str | None
    broker_pid: int | None


@dataclass
class PhaseResult:
    target: str  # "baseline" | "edge"
    kind: str  # "open" | "closed"
    label: str
    seconds: float
    measured: int
    accepted: int
    throughput: float  # accepted deliveries per second
    p50_ms: float
    p99_ms: float
    max_ms: float
    send_lag_p99_ms: float | None  # open loop: how late the client sent (its own stalls)
    statuses: dict[str, int]
    outcomes: dict[str, int]
    errors: dict[str, int]
    first_failure: str
    sent_total: int  # warm-up included
    accepted_total: int  # warm-up included
    cpu_percent: dict[str, float]
    accepted_event_ids: set[str] = field(default_factory=set, repr=False)

    def public(self) -> dict[str, Any]:
        """For the JSON report: everything but the event ids."""
        return {k: v for k, v in asdict(self).items() if k != "accepted_event_ids"}


def _merge(
    target: str, phase: Phase, results: Sequence[ClientResult], cpu: dict[str, float]
) -> PhaseResult:
    latencies = array.array("d")
    lags = array.array("d")
    statuses: Counter[int] = Counter()
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for result in results:
        latencies.frombytes(result.latencies)
        lags.frombytes(result.send_lags)
        statuses.update(result.statuses)
        outcomes.update(result.outcomes)
        errors.update(result.errors)
    ordered = sorted(latencies)
    accepted = sum(r.accepted_measured for r in results)
    if phase.kind == "open":
        # Deliveries scheduled in the window over the time until the last of them was
        # answered: below the offered rate when the target falls behind.
        last = max((r.last_completion for r in results), default=phase.measure_until)
        seconds = max(phase.duration, last - phase.measure_from)
        label = f"open {phase.rate:g}/s"
    else:
        seconds = phase.duration
        label = f"closed c={phase.concurrency}"
    return PhaseResult(
        target=target,
        kind=phase.kind,
        label=label,
        seconds=seconds,
        measured=sum(r.measured for r in results),
        accepted=accepted,
        throughput=accepted / seconds,
        p50_ms=percentile(ordered, 0.50) * 1e3,
        p99_ms=percentile(ordered, 0.99) * 1e3,
        max_ms=(ordered[-1] * 1e3) if ordered else float("nan"),
        send_lag_p99_ms=percentile(sorted(lags), 0.99) * 1e3 if phase.kind == "open" else None,
        statuses={str(k): v for k, v in sorted(statuses.items())},
        outcomes=dict(outcomes),
        errors=dict(errors),
        first_failure=next((r.first_failure for r in results if r.first_failure), ""),
        sent_total=sum(r.sent for r in results),
        accepted_total=sum(r.outcomes["accepted"] for r in results),
        cpu_percent=cpu,
        accepted_event_ids={
            event_id
            for r in results
            for event_id in r.accepted_ids.decode().split("\n")
            if event_id
        },
    )


def run_phase(
    target: str,
    clients: Clients,
    cpu: CpuCounter,
    phase_args: dict[str, Any],
    args: argparse.Namespace,
) -> PhaseResult:
    # Start a moment from now so every client has the phase before its first send.
    phase = Phase(
        start_at=time.monotonic() + 0.5, warmup=args.warmup, duration=args.duration, **phase_args
    )
    clients.start(phase)
    time.sleep(max(0.0, phase.measure_from - time.monotonic()))
    before = cpu.sample()
    time.sleep(max(0.0, phase.measure_until - time.monotonic()))
    after = cpu.sample()
    results = clients.collect(phase)
    return _merge(target, phase, results, cpu_percent(before, after, phase.duration))


def run_target(
    target: str,
    endpoints: Sequence[ServerProcess],
    env: Environment,
    clients: Clients,
    args: argparse.Namespace,
) -> tuple[list[PhaseResult], int]:
    """Both phases against one target behind a fresh Envoy; returns them and how often
    Envoy asked the rate limiter (never, expectedly: a webhook carries no token, so the
    ratelimit filter has no merchant descriptor to send)."""
    with envoy_gateway(env.root, target, [s.address for s in endpoints], env.jwks_path) as gateway:
        groups: dict[str, Callable[[], list[int]]] = {
            "client": lambda: list(clients.pids),
            "envoy": lambda: [gateway.pid],
            "server": lambda: [s.pid for s in endpoints],
        }
        if target == "edge":
            pg = postmaster_pid(env.pg_data_dir)
            groups["postgres"] = lambda: descendants(pg) if pg else []
            groups["redis"] = lambda: [env.redis_pid]
            if env.broker_pid is not None:
                broker = env.broker_pid
                groups["broker"] = lambda: [broker]
        cpu = CpuCounter(groups)
        url = gateway.url + f"/v1/api/webhooks/{TOPIC}"
        results = [
            run_phase(target, clients, cpu, {"kind": "open", "url": url, "rate": args.rate}, args),
            run_phase(
                target,
                clients,
                cpu,
                {"kind": "closed", "url": url, "concurrency": args.concurrency},
                args,
            ),
        ]
        return results, gateway.rate_limit_checks()


def grpc_codes(metrics_ports: Sequence[int]) -> dict[str, int]:
    """ReceiveWebhook calls by gRPC status code, summed over the edge processes' /metrics."""
    codes: Counter[str] = Counter()
    pattern = re.compile(
        r'^grpc_server_handled_total\{(?=[^}]*grpc_method="ReceiveWebhook")'
        r'[^}]*grpc_code="([A-Z_]+)"[^}]*\} ([0-9.e+]+)$'
    )
    for port in metrics_ports:
        with contextlib.suppress(OSError):
            for line in _http_get(f"http://127.0.0.1:{port}/metrics").splitlines():
                match = pattern.match(line)
                if match:
                    codes[match.group(1)] += int(float(match.group(2)))
    return dict(codes)


# -------------------------------------------------------------------------------- correctness


def _count(database_url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def _strings(database_url: str, sql: str) -> set[str]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return {str(row[0]) for row in conn.execute(sql)}


def _read_topic(bootstrap: str, topic: str, timeout: float = 60.0) -> tuple[int, set[str]]:
    """Reads `topic` from the start to its end offsets: (records, distinct event ids)."""
    from kafka import KafkaConsumer, TopicPartition

    from loyalnest.platform.events.envelope import EVENT_ID_HEADER

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="bench-check",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        records = 0
        ids: set[str] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(
            consumer.position(tp) < ends[tp] for tp in assigned
        ):
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                for record in batch:
                    records += 1
                    for name, value in record.headers or ():
                        if name == EVENT_ID_HEADER and value is not None:
                            ids.add(value.decode())
        return records, ids
    finally:
        consumer.close()


def verify_edge(
    env: Environment, results: Sequence[PhaseResult], drain_timeout: float
) -> dict[str, Any]:
    """Every response 200 and ACCEPTED; each accepted delivery recorded once (idempotency key
    and outbox row); with the broker, the outbox drained and every event on the topic."""
    from loyalnest.platform.events.topics import EDGE

    accepted_ids = set().union(*(r.accepted_event_ids for r in results))
    accepted = sum(r.accepted_total for r in results)
    sent = sum(r.sent_total for r in results)
    non_200 = sum(v for r in results for k, v in r.statuses.items() if k != "200")
    failures = sum(sum(r.errors.values()) for r in results)
    key_ids = _strings(env.database_url, "SELECT event_id FROM edge.webhook_idempotency_keys")
    outbox_ids = _strings(env.database_url, "SELECT event_id::text FROM edge.outbox")
    outbox_rows = _count(env.database_url, "SELECT count(*) FROM edge.outbox")
    check: dict[str, Any] = {
        "deliveries_sent": sent,
        "accepted": accepted,
        "non_200": non_200,
        "client_errors": failures,
        "idempotency_keys": len(key_ids),
        "outbox_rows": outbox_rows,
        # Acknowledged (200 ACCEPTED) but not recorded: a lost webhook.
        "accepted_not_recorded": len(accepted_ids - key_ids),
        # Recorded although the client saw no 200 (it gave up, or Envoy did): Shopify would
        # deliver it again and get DUPLICATE, so nothing is lost, but the counts differ.
        "recorded_without_200": len(key_ids - accepted_ids),
    }
    ok = (
        non_200 == 0
        and failures == 0
        and accepted == sent == len(accepted_ids)
        and key_ids == accepted_ids
        and outbox_rows == len(outbox_ids) == len(key_ids)
    )
    if env.kafka is not None:
        started = time.monotonic()
        pending = -1
        while time.monotonic() - started < drain_timeout:
            pending = _count(
                env.database_url, "SELECT count(*) FROM edge.outbox WHERE sent_at IS NULL"
            )
            if pending == 0:
                break
            time.sleep(0.2)
        check["outbox_pending_after_run"] = pending
        check["relay_drain_seconds"] = round(time.monotonic() - started, 1)
        try:
            records, on_broker = _read_topic(env.kafka, EDGE.name)
        except Exception as exc:  # reported, and the check fails
            check["broker_error"] = repr(exc)
            records, on_broker = 0, set()
        missing = outbox_ids - on_broker
        check["broker_records"] = records
        check["broker_missing_events"] = len(missing)
        # At least once: a relay retry may publish an event twice (consumers dedupe), so
        # more records than rows is not a loss; an outbox event absent from the topic is.
        ok = ok and pending == 0 and not missing and "broker_error" not in check
    check["ok"] = ok
    return check


# ---------------------------------------------------------------------------------- the run


@contextlib.contextmanager
def environment(args: argparse.Namespace, root: Path) -> Iterator[Environment]:
    """PostgreSQL, Valkey and (unless --no-broker) tansu; all stopped at the end."""
    from loyalnest.devstack.postgres import free_port
    from loyalnest.devstack.servers import KafkaBroker, port_in_use
    from loyalnest.platform.auth.keys import KeySet

    jwks_path = root / "jwks.json"
    # Envoy's jwt_authn needs a JWKS; webhooks are public, so no token is ever minted.
    jwks_path.write_text(json.dumps(KeySet.generate(local=True).public_jwks()))
    secret = f"bench-shopify-secret-{uuid.uuid4().hex}"
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(throwaway_postgres(root, ephemeral=not args.pg_durable))
        postgres.create_database("bench")
        redis = stack.enter_context(valkey_server(root))
        kafka = None
        broker_pid = None
        if args.broker:
            broker = KafkaBroker(free_port())
            process = stack.enter_context(
                binary_process(
                    broker.argv(),
                    root / "tansu.log",
                    lambda: port_in_use(broker.port),
                    "tansu",
                )
            )
            kafka = broker.bootstrap_servers
            broker_pid = process.pid
        yield Environment(
            root=root,
            secret=secret,
            jwks_path=jwks_path,
            database_url=postgres.url("bench"),
            pg_data_dir=postgres.data_dir,
            redis_url=redis.url,
            redis_pid=redis.pid,
            kafka=kafka,
            broker_pid=broker_pid,
        )


def run_benchmark(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, Any]:
    import aiohttp

    load_before = os.getloadavg()
    sizes = payload_sizes("x")
    seed = random.randrange(1 << 30)
    with (
        throwaway_root("loyalnest-bench-webhooks-", args.logs) as root,
        environment(args, root) as env,
        client_processes(args.clients, env.secret, seed) as clients,
    ):
        results: list[PhaseResult] = []
        # One target at a time; each one and its Envoy stop before the next starts.
        say(f"baseline: {args.workers} bare grpc.aio process(es) behind Envoy ...")
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(server_process(baseline_server_process))
                for _ in range(args.workers)
            ]
            baseline, baseline_rls = run_target("baseline", servers, env, clients, args)
        results += baseline
        say(f"edge: {args.workers} edge service process(es) behind Envoy ...")
        with contextlib.ExitStack() as stack:
            from loyalnest.devstack.postgres import free_port

            metrics_ports = [free_port() for _ in range(args.workers)]
            # One after the other: the first runs the migrations.
            servers = [
                stack.enter_context(
                    server_process(
                        edge_server_process,
                        edge_settings(args, env) | {"metrics_port": metrics_ports[index]},
                        # Only the first worker, when asked: one profile file.
                        args.profile_server if index == 0 else None,
                    )
                )
                for index in range(args.workers)
            ]
            edge, edge_rls = run_target("edge", servers, env, clients, args)
            results += edge
            edge_codes = grpc_codes(metrics_ports)
            say("checking the edge's records ...")
            # While the edge runs: its relay drains the outbox to the broker.
            check = verify_edge(env, edge, args.drain_timeout)
    peak = {r.target: r for r in results if r.kind == "closed"}
    open_loop = {r.target: r for r in results if r.kind == "open"}
    ratio = (
        peak["edge"].throughput / peak["baseline"].throughput
        if peak["baseline"].throughput
        else 0.0
    )
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0],
        "grpc": grpc.__version__,
        "aiohttp": aiohttp.__version__,
        "uvloop": _has_uvloop(),
        "envoy": envoy_version(),
        "workers": args.workers,
        "clients": args.clients,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "warmup_seconds": args.warmup,
        "duration_seconds": args.duration,
        "tracing": args.tracing,
        "broker": args.broker,
        "pg_durable": args.pg_durable,
        "payload_bytes": {
            "min": sizes[0],
            "median": sizes[len(sizes) // 2],
            "max": sizes[-1],
            "mean": round(sum(sizes) / len(sizes)),
        },
        "results": [r.public() for r in results],
        "envoy_rate_limit_checks": {"baseline": baseline_rls, "edge": edge_rls},
        # The edge's own count of ReceiveWebhook calls by status code (its /metrics).
        "edge_grpc_codes": edge_codes,
        "ratio_peak_throughput": ratio,
        "goals": {
            "p99_ms_at_rate": GOAL_P99_MS,
            "p99_ms_measured": open_loop["edge"].p99_ms,
            "p99_met": open_loop["edge"].p99_ms < GOAL_P99_MS
            and open_loop["edge"].throughput >= 0.95 * args.rate,
            "peak_per_second": GOAL_PEAK_PER_SECOND,
            "peak_measured": peak["edge"].throughput,
            "peak_met": peak["edge"].throughput >= GOAL_PEAK_PER_SECOND,
        },
        "correctness": check,
    }


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------- reporting

CPU_COLUMNS = ("client", "envoy", "server", "postgres", "redis", "broker", "other")


def render(report: dict[str, Any]) -> str:
    sizes = report["payload_bytes"]
    load = " ".join(f"{x:.2f}" for x in report["loadavg_before"])
    load_after = " ".join(f"{x:.2f}" for x in report["loadavg_after"])
    lines = [
        f"cpus: {report['cpu_count']}   python {report['python']}   grpcio {report['grpc']}   "
        f"envoy {report['envoy']}   aiohttp {report['aiohttp']}"
        f"{' + uvloop' if report['uvloop'] else ''}",
        f"load average before: {load}   after: {load_after}",
        f"servers: {report['workers']} process(es) per target behind one Envoy; edge: tracing "
        f"{'on' if report['tracing'] else 'off'}, Redis dedupe, PostgreSQL "
        f"{'durable (fsync on)' if report['pg_durable'] else 'fsync off'}, outbox relay "
        f"{'-> tansu' if report['broker'] else 'off (rows stay in the outbox)'}",
        f"payload: signed {TOPIC}, {sizes['mean']} B mean ({sizes['min']}-{sizes['max']}), "
        "unique ids and X-Shopify-Event-Id per delivery",
        f"client: {report['clients']} process(es); open loop {report['rate']:g}/s, closed loop "
        f"{report['concurrency']} concurrent; warm-up {report['warmup_seconds']:g}s, "
        f"measured {report['duration_seconds']:g}s per phase",
        "",
        f"{'phase':<15}{'target':<10}{'acc/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'lag99':>7}{'fail':>6} |cpu%"
        + "".join(f"{c:>9}" for c in CPU_COLUMNS)
        + f"{'srv us/req':>11}",
    ]
    for result in report["results"]:
        cpu = result["cpu_percent"]
        failures = (
            sum(v for k, v in result["statuses"].items() if k != "200")
            + sum(result["errors"].values())
            + result["outcomes"].get("duplicate", 0)
            + result["outcomes"].get("other", 0)
        )
        lag = result["send_lag_p99_ms"]
        per_request = (
            f"{cpu['server'] * 1e4 / result['throughput']:.0f}"
            if "server" in cpu and result["throughput"]
            else "-"
        )
        lines.append(
            f"{result['label']:<15}{result['target']:<10}{result['throughput']:>7.0f}"
            f"{result['p50_ms']:>8.1f}{result['p99_ms']:>8.1f}{result['max_ms']:>8.0f}"
            f"{'-' if lag is None else f'{lag:.1f}':>7}{failures:>6} |    "
            + "".join(f"{cpu[c]:>9.0f}" if c in cpu else f"{'-':>9}" for c in CPU_COLUMNS)
            + f"{per_request:>11}"
        )
        if failures:
            lines.append(
                f"{'':<25}statuses {result['statuses']} outcomes {result['outcomes']} "
                f"errors {result['errors']}"
            )
            if result["first_failure"]:
                lines.append(f"{'':<25}first: {result['first_failure'][:200]}")
    goals = report["goals"]
    check = report["correctness"]

    def verdict(met: bool) -> str:
        return "met" if met else "NOT met"

    lines += [
        "",
        f"ratio edge/baseline peak throughput: {report['ratio_peak_throughput']:.2f}x",
        f"goal p99 < {goals['p99_ms_at_rate']:g} ms at {report['rate']:g}/s: "
        f"{goals['p99_ms_measured']:.1f} ms ({verdict(goals['p99_met'])})",
        f"goal peak >= {goals['peak_per_second']:g}/s: {goals['peak_measured']:.0f}/s "
        f"({verdict(goals['peak_met'])})",
        "edge's own count of ReceiveWebhook calls by status: "
        + (", ".join(f"{k} {v}" for k, v in sorted(report["edge_grpc_codes"].items())) or "-"),
        "Envoy -> rate-limit service calls (webhooks carry no token: expect 0): "
        f"{report['envoy_rate_limit_checks']['baseline']} baseline, "
        f"{report['envoy_rate_limit_checks']['edge']} edge",
        "correctness (edge, warm-up included): "
        f"{check['deliveries_sent']} sent, {check['accepted']} accepted (200), "
        f"{check['non_200']} other statuses, {check['client_errors']} client errors",
        f"  PostgreSQL: {check['idempotency_keys']} idempotency keys, "
        f"{check['outbox_rows']} outbox rows; {check['accepted_not_recorded']} accepted but "
        f"not recorded, {check['recorded_without_200']} recorded without a 200",
    ]
    if "broker_records" in check:
        lines.append(
            f"  relay: outbox drained in {check['relay_drain_seconds']}s "
            f"({check['outbox_pending_after_run']} pending); {check['broker_records']} records "
            f"on the broker, {check['broker_missing_events']} outbox events missing there"
            + (f" ({check['broker_error']})" if "broker_error" in check else "")
        )
    lines.append(f"  => {'OK' if check['ok'] else 'FAILED'}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=500.0, help="open loop: deliveries/s")
    parser.add_argument("--concurrency", type=int, default=64, help="closed loop: senders")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="discarded seconds per phase")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes per target (Envoy endpoints)"
    )
    parser.add_argument("--clients", type=int, default=1, help="HTTP client processes")
    parser.add_argument(
        "--tracing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="OpenTelemetry tracing in the edge service (production default: on)",
    )
    parser.add_argument(
        "--broker",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run tansu and the edge's outbox relay (production: on)",
    )
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="PostgreSQL with fsync and synchronous commit on (default: off, as in the tests)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the relay to empty the outbox after the load",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report instead")
    parser.add_argument(
        "--logs",
        type=Path,
        metavar="DIR",
        help="copy the logs (Envoy's access and error logs, PostgreSQL, tansu) to DIR",
    )
    parser.add_argument(
        "--profile-server",
        metavar="PATH",
        help="run the (first) edge process under cProfile and write its stats to PATH "
        "(slows the edge; read with `python -m pstats PATH`)",
    )
    args = parser.parse_args(argv)
    if (
        args.rate <= 0
        or args.concurrency < 1
        or args.duration <= 0
        or args.warmup < 0
        or args.workers < 1
        or args.clients < 1
    ):
        parser.error(
            "--rate/--duration must be > 0, --concurrency/--workers/--clients >= 1, --warmup >= 0"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)

    def say(message: str) -> None:
        if not args.json:
            print(message, file=sys.stderr, flush=True)

    say("starting PostgreSQL, Valkey" + (", tansu" if args.broker else "") + " ...")
    report = run_benchmark(args, say)
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0 if report["correctness"]["ok"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        sys.exit(130)
