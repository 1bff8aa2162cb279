"""Redacting an outbox event that names an erased customer, before it is published.

An erasure cannot edit what Kafka already holds (crypto-shredding covers that), but events
still waiting in an outbox can be rewritten. They are redacted rather than dropped: the
consumers that keep amounts or counts (ledgers, liability, RFM, plan usage) must still see
them, or their figures drift from the producer's, whose own rows moved to an anonymous id in
the same transaction. So a redacted event says the same thing about an anonymous id:

- every string equal to one of the customer's identifiers, or holding one as a `:`, `/` or
  `|`-separated part (derived ids such as `merchant|customer|...`), names the replacement;
- a message that named the customer (their own email in a contact field included) loses its
  contact fields (`PERSONAL_FIELDS`) and its bytes fields: sealed copies of their data
  (`SealedCustomerData.ciphertext`, unreadable anyway once the edge erased the key) and
  version-1 raw bodies.

The record key (`<merchant>/<aggregate>`) is rewritten the same way; the row keeps its place
(id, lane), so events still leave in order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from loyalnest.platform.events.envelope import Envelope
from loyalnest.platform.events.topics import spec_for_type

# Fields that hold contact data in clear whatever message they are in.
PERSONAL_FIELDS = frozenset(
    {"email", "phone", "first_name", "last_name", "full_name", "address", "ip_address"}
)
_SEPARATORS = ":/|"


@dataclass(frozen=True)
class Redacted:
    """An outbox row's new envelope and record key."""

    envelope: bytes
    key: str


class Redactor:
    """Rewrites events naming any of `identifiers` to name `replacement` instead: one id for
    all, or a function giving each identifier its own (an erasure's anonymous ids,
    personal_data.CustomerRef.anonymous_id, the same in every service)."""

    def __init__(self, identifiers: Iterable[str], replacement: str | Callable[[str], str]) -> None:
        self.identifiers = frozenset(i for i in identifiers if i)
        replace = replacement if callable(replacement) else (lambda _: replacement)
        self._replacements = {i: replace(i) for i in self.identifiers}
        if set(self._replacements.values()) & self.identifiers:
            raise ValueError("a replacement must not be one of the identifiers")
        alternatives = "|".join(re.escape(i) for i in sorted(self.identifiers, key=len)[::-1])
        # A whole value or a separated part of one, never a substring of a longer id.
        sep = re.escape(_SEPARATORS)
        self._pattern = (
            re.compile(f"(?<![^{sep}])(?:{alternatives})(?![^{sep}])") if self.identifiers else None
        )

    @property
    def needles(self) -> list[bytes]:
        """What a serialized event naming the customer contains (strings are raw UTF-8 in
        protobuf's wire format): a cheap filter before decoding."""
        return [identifier.encode() for identifier in sorted(self.identifiers)]

    def text(self, value: str) -> str:
        if self._pattern is None:
            return value
        return self._pattern.sub(lambda match: self._replacements[match.group(0)], value)

    def record(self, envelope_bytes: bytes, key: str) -> Redacted | None:
        """The redacted envelope and key, or None when the event does not name the
        customer (left as it is)."""
        envelope = Envelope.FromString(envelope_bytes)
        payload = spec_for_type(envelope.event_type).payload_type()
        if not envelope.payload.Unpack(payload):
            raise ValueError(f"undecodable {envelope.event_type} in the outbox")
        new_key = self.text(key)
        if not self.message(payload) and new_key == key:
            return None
        envelope.payload.Pack(payload)
        return Redacted(envelope.SerializeToString(), new_key)

    def message(self, message: Message) -> bool:
        """Redacts `message` in place; True when anything changed."""
        changed = False
        named = False
        for field, value in message.ListFields():
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                entry = field.message_type
                if entry is not None and entry.GetOptions().map_entry:
                    value_field = entry.fields_by_name["value"]
                    if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                        for item in value.values():
                            changed |= self.message(item)
                    elif value_field.type == FieldDescriptor.TYPE_STRING:
                        for map_key in list(value):
                            new = self.text(value[map_key])
                            if new != value[map_key]:
                                value[map_key] = new
                                named = True
                    continue
                items = value if _repeated(field) else [value]
                for item in items:
                    changed |= self.message(item)
            elif field.type == FieldDescriptor.TYPE_STRING:
                if field.name in PERSONAL_FIELDS:
                    # Cleared below if this message names the customer (their own email
                    # included); another person's contact data is not this erasure's.
                    named |= any(self.text(item) != item for item in _items(field, value))
                elif _repeated(field):
                    for index, item in enumerate(value):
                        new = self.text(item)
                        if new != item:
                            value[index] = new
                            named = True
                else:
                    new = self.text(value)
                    if new != value:
                        setattr(message, field.name, new)
                        named = True
        if named:
            # Its contact fields and bytes (sealed copies, a version-1 raw body) go too.
            for field, _ in message.ListFields():
                if field.type == FieldDescriptor.TYPE_BYTES or (
                    field.type == FieldDescriptor.TYPE_STRING and field.name in PERSONAL_FIELDS
                ):
                    message.ClearField(field.name)
        return changed or named


def _items(field: FieldDescriptor, value: Any) -> list[str]:
    return list(value) if _repeated(field) else [value]


def _repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)
