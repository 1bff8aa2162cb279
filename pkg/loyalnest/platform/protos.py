"""Small conversions between Python values and well-known protobuf types."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def optional_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """None stays None: a message field given None is left unset (e.g. a session not ended)."""
    return None if value is None else timestamp(value)


def epoch_timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    """Unix seconds (a JWT's `iat`, `exp`) as a Timestamp."""
    return timestamp_pb2.Timestamp(seconds=seconds)
