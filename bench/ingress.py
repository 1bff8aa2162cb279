"""What the webhook benchmarks share: signed Shopify orders/create deliveries, the HTTP
client processes that send them (open and closed loop), Envoy running the gateway config our
code generates, the throwaway environment (PostgreSQL, Valkey, tansu) and the services'
settings.

    from ingress import DeliveryFactory, client_processes, envoy_gateway, environment

Used by bench_webhooks.py (the ingress alone) and bench_orders.py (webhooks to points).
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

from harness import (
    READY_TIMEOUT_SECONDS,
    CpuCounter,
    binary_process,
    cpu_percent,
    percentile,
    stop_process,
    throwaway_postgres,
    valkey_server,
)

TOPIC = "orders/create"
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
RETURNING_CUSTOMER_BASE = 5_800_000_000_000  # below every per-order id


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

    def __init__(
        self,
        secret: str,
        index: int,
        clients: int,
        seed: int,
        variants: int = 64,
        customers: int = 0,
    ):
        """`customers`: orders name one of that many customers (shared by every client),
        returning ones after the first round; 0: a new customer per order."""
        rng = random.Random(seed)
        self._customers = customers
        self._templates = [Template.compile(order_template(rng)) for _ in range(variants)]
        self._secret = secret.encode()
        self._index = index
        self._clients = clients
        self._seq = 0
        # The customer id of the last delivery made: bench_orders.py follows each order
        # (each one a new customer) to the customer's balance update.
        self.last_customer_id = 0

    def next(self) -> tuple[bytes, dict[str, str]]:
        n = self._seq * self._clients + self._index
        self._seq += 1
        base = ID_BASE + n * SLOT_STRIDE
        self.last_customer_id = base + SLOT_CUSTOMER
        if self._customers:
            self.last_customer_id = RETURNING_CUSTOMER_BASE + n % self._customers
        values = [str(base + slot).encode() for slot in range(SLOT_STRIDE)]
        values[SLOT_CUSTOMER] = str(self.last_customer_id).encode()
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
    # Open loop: the customer id of every delivery of the phase (array('q'), warm-up
    # included) and its scheduled send time (array('d'), same order).
    customer_ids: bytes = b""
    scheduled: bytes = b""


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
        self._customer_ids = array.array("q")
        self._scheduled = array.array("d")

    def track(self, customer_id: int, scheduled: float) -> None:
        """Remembers when the delivery for `customer_id` was due (open loop)."""
        self._customer_ids.append(customer_id)
        self._scheduled.append(scheduled)

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
        self.result.customer_ids = self._customer_ids.tobytes()
        self.result.scheduled = self._scheduled.tobytes()
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
        sender.track(factory.last_customer_id, scheduled)
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


def client_process(
    conn: Connection, index: int, clients: int, secret: str, seed: int, customers: int = 0
) -> None:
    """Child process entry point: runs the phases the parent sends, returns their results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:  # plain asyncio: the client costs more CPU (the table shows it)
        loop_factory = None
    factory = DeliveryFactory(secret, index, clients, seed, customers=customers)
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
def client_processes(count: int, secret: str, seed: int, customers: int = 0) -> Iterator[Clients]:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    processes, conns, pids = [], [], []
    try:
        for index in range(count):
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=client_process,
                args=(child_end, index, count, secret, seed, customers),
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


# ---------------------------------------------------------------------------- server settings


EDGE_MODULE = "loyalnest.services.edge.service"
NO_CALLEES = "unix:///nonexistent/loyalnest-{service}.sock"
POINTS_MODULE = "loyalnest.services.points.service"


PAGE_TOKEN_KEY = os.environ["LOYALNEST_PAGE_TOKEN_KEY"]  # set by harness, one per run


def kafka_client_default(setting: str) -> str:
    """The platform's default for `kafka_producer` / `kafka_consumer`: a bench without
    --kafka-producer / --kafka-consumer measures what a deployment runs. (Imported here:
    the load clients import this module and stay free of the platform.)"""
    from loyalnest.platform.config import EventSettings

    return str(EventSettings.model_fields[setting].default)


def service_settings(
    env: Environment,
    *,
    tracing: bool,
    kafka_producer: str | None = None,
    kafka_consumer: str | None = None,
) -> dict[str, Any]:
    """Production defaults (interceptors, tracing, metrics, pool size, relay and consumer
    settings) with this run's addresses; only logging is quieter."""
    return {
        "grpc_port": 0,
        "metrics_enabled": True,
        "metrics_port": 0,
        "database_url": env.database_url,
        "redis_url": env.redis_url,
        "jwt_jwks_path": str(env.jwks_path),
        "events_enabled": env.kafka is not None,
        "kafka_bootstrap_servers": env.kafka or "127.0.0.1:9092",
        "tracing_enabled": tracing,
        "kafka_producer": kafka_producer or kafka_client_default("kafka_producer"),
        "kafka_consumer": kafka_consumer or kafka_client_default("kafka_consumer"),
        "otel_exporter_otlp_endpoint": None,
        "access_log": False,
        "shutdown_grace_seconds": 2.0,
        "log_level": "WARNING",
        "log_format": "console",
        # No Auth in this run: the declared callees (edge -> auth, points -> auth) are
        # nowhere, and without a service credential neither service calls them.
        "call_target_template": NO_CALLEES,
        # Required outside a developer's machine; one per run, the same for every replica.
        "page_token_key": PAGE_TOKEN_KEY,
    }


def edge_settings(args: argparse.Namespace, env: Environment) -> dict[str, Any]:
    """The edge's settings (`service_settings`, `args.tracing`) with this run's Shopify secret
    and a master key of its own (required outside a developer's machine: the bench's JWKS
    has no local keyset beside it). With `args.pseudonyms` (as deployed) the edge owns the
    customer pseudonyms: its relay reads its own table, and it serves the others'."""
    return service_settings(
        env,
        tracing=args.tracing,
        kafka_producer=getattr(args, "kafka_producer", None),
        kafka_consumer=getattr(args, "kafka_consumer", None),
    ) | {
        "shopify_api_secret": env.secret,
        "edge_encryption_key": base64.b64encode(os.urandom(32)).decode(),
        # Benches without the option (referrals, relay) run every service without them.
        "customer_pseudonyms": getattr(args, "pseudonyms", False),
    }


# ------------------------------------------------------- Auth, service identities, pseudonyms

AUTH_MODULE = "loyalnest.services.auth.service"


@dataclass(frozen=True)
class ServiceIdentities:
    """Auth running with this run's service-credential master key: what a service is given
    to call others as the chart configures it (its credential, Auth as a call target, and
    the edge for customer pseudonyms)."""

    master_key: bytes
    auth_address: str

    def settings(self, service: str, *, edge_address: str | None = None) -> dict[str, Any]:
        from loyalnest.platform.auth.service_identity import service_credential

        targets = {"auth": self.auth_address} | ({"edge": edge_address} if edge_address else {})
        return {
            "service_credential": service_credential(self.master_key, service),
            "call_targets": targets,
        }


def auth_settings(env: Environment, master_key: bytes) -> dict[str, Any]:
    """Auth as the mesh runs it for service tokens and merchant checks: signing with the run's
    keyset (whose public half every service and Envoy trust), verifying credentials with
    `master_key`. Its Shopify OAuth settings are never used (`install_shops` seeds the
    merchants)."""
    return service_settings(env, tracing=False) | {
        "auth_signing_keys_path": str(env.keyset_path),
        "auth_encryption_key": base64.b64encode(os.urandom(32)).decode(),
        "auth_service_credential_key": base64.b64encode(master_key).decode(),
        "shopify_api_key": "bench-api-key",
        "shopify_api_secret": env.secret,
    }


async def install_shops(settings: dict[str, Any], shops: Sequence[str]) -> None:
    """Each shop installed in Auth as its OAuth callback would (Auth's store, `install`, with
    a placeholder Shopify token sealed under Auth's key): services with a credential skip
    webhooks of merchants Auth does not know."""
    from loyalnest.platform.postgres import Database
    from loyalnest.services.auth.service import DATABASE, AuthSettings, field_encryption
    from loyalnest.services.auth.shopify import ShopifyTokens
    from loyalnest.services.auth.store import AuthStore

    auth = AuthSettings(**settings)
    database = Database(auth, DATABASE)
    await database.open()
    try:
        store = AuthStore(database, *field_encryption(auth, local=False))
        tokens = ShopifyTokens("bench-offline-token", ("read_orders",))
        for shop in shops:
            async with store.pool.connection() as conn, conn.transaction():
                await store.install(conn, shop, tokens)
    finally:
        await database.close()


def add_pseudonyms_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pseudonyms",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="customer pseudonyms on Kafka, as deployed (the chart's LOYALNEST_CUSTOMER_"
        "PSEUDONYMS=true): the edge owns them; other services reach it with a token from Auth, "
        "which then runs too (default: on)",
    )


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


# ----------------------------------------------------------------------------- the environment


@dataclass
class Environment:
    root: Path
    secret: str
    jwks_path: Path
    # The private half of jwks_path's keys, for an Auth process that mints service tokens.
    keyset_path: Path
    database_url: str
    pg_data_dir: Path
    redis_url: str
    redis_pid: int
    kafka: str | None
    broker_pid: int | None


@contextlib.contextmanager
def environment(args: argparse.Namespace, root: Path) -> Iterator[Environment]:
    """PostgreSQL, Valkey and (unless --no-broker) tansu; all stopped at the end."""
    from loyalnest.devstack.postgres import free_port
    from loyalnest.devstack.servers import KafkaBroker, port_in_use
    from loyalnest.platform.auth.keys import KeySet

    jwks_path = root / "jwks.json"
    keyset_path = root / "keyset.json"
    # Envoy's jwt_authn needs a JWKS (webhooks are public); the services verify the service
    # tokens Auth signs with the private half (customer pseudonyms, `auth_process`).
    keyset = KeySet.generate(local=True)
    jwks_path.write_text(json.dumps(keyset.public_jwks()))
    keyset_path.write_text(keyset.to_json())
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
            keyset_path=keyset_path,
            database_url=postgres.url("bench"),
            pg_data_dir=postgres.data_dir,
            redis_url=redis.url,
            redis_pid=redis.pid,
            kafka=kafka,
            broker_pid=broker_pid,
        )


_PRIVATE_FIELDS = ("accepted_event_ids", "scheduled", "measure_from")


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
    # Open loop: customer id -> scheduled send time of every delivery, warm-up included.
    scheduled: dict[int, float] = field(default_factory=dict, repr=False)
    measure_from: float = 0.0  # time.monotonic() the measured window started

    def public(self) -> dict[str, Any]:
        """For the JSON report: everything but the event ids and the timetable."""
        return {k: v for k, v in asdict(self).items() if k not in _PRIVATE_FIELDS}


def merge_results(
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
        scheduled=_timetable(results),
        measure_from=phase.measure_from,
    )


def _timetable(results: Sequence[ClientResult]) -> dict[int, float]:
    table: dict[int, float] = {}
    for result in results:
        customers = array.array("q")
        customers.frombytes(result.customer_ids)
        times = array.array("d")
        times.frombytes(result.scheduled)
        table.update(zip(customers, times, strict=True))
    return table


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
    return merge_results(target, phase, results, cpu_percent(before, after, phase.duration))


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


# ------------------------------------------------------------------------------------- queries


def query_count(database_url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def query_strings(database_url: str, sql: str) -> set[str]:
    import psycopg

    with psycopg.connect(database_url) as conn:
        return {str(row[0]) for row in conn.execute(sql)}


def has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def add_kafka_producer_option(parser: argparse.ArgumentParser) -> None:
    """--kafka-producer and --kafka-consumer: the services' Kafka clients."""
    producer, consumer = (
        kafka_client_default("kafka_producer"),
        kafka_client_default("kafka_consumer"),
    )
    parser.add_argument(
        "--kafka-producer",
        choices=("kafka-python", "confluent"),
        default=producer,
        help=f"the services' outbox relay producer (setting kafka_producer; default {producer})",
    )
    parser.add_argument(
        "--kafka-consumer",
        choices=("kafka-python", "confluent"),
        default=consumer,
        help=f"the services' event consumers' client (setting kafka_consumer; default {consumer})",
    )
