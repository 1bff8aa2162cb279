"""The REST surface as an OpenAPI 3 document, generated from the descriptor set.

The gateway's transcoder serves exactly what the `google.api.http` bindings in the descriptor
set say, printing JSON as configured in `envoy_config._transcoder`; this module describes the
same thing, so the document cannot drift from what Envoy does:

- one operation per binding (additional bindings included) of every RPC that is not
  `(access).internal` (the gateway never routes those); server-streaming RPCs are described
  with their NDJSON body;
- path parameters from the template (`{reward.reward_id}`), the request body from `body`
  (`*`: the request message; a field: that field, `google.api.HttpBody`: any bytes), and for
  bodiless bindings every other scalar field as a query parameter (nested messages as
  `a.b`), as the transcoder reads them (it rejects unknown query parameters);
- the proto3 JSON mapping the transcoder prints with: `preserve_proto_field_names`, 64-bit
  integers as strings, enums by name, Timestamp/Duration/FieldMask as strings,
  `always_print_primitive_fields` (so scalars are always present in responses);
- errors: every non-2xx answer is a `google.rpc.Status` JSON (`local_replies` makes Envoy's
  own replies so too);
- auth: a bearer JWT everywhere but the RPCs declared `(access) = {public: true}`.

`python -m loyalnest.gateway openapi` prints it; `make chart` commits it to the chart, which
the gateway serves at `GET /v1/api/openapi.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

from loyalnest.gateway.descriptors import load_descriptor_set
from loyalnest.gen.options.v1 import access_pb2

OPENAPI_PATH = "/v1/api/openapi.json"
OPENAPI_VERSION = "3.0.3"
STATUS_SCHEMA = "google.rpc.Status"
BEARER = "bearerAuth"
NDJSON = "application/x-ndjson"
_FIELD = descriptor_pb2.FieldDescriptorProto
_PATH_PARAM_RE = re.compile(r"\{([^}=]+)(=[^}]*)?\}")
_INT64_TYPES = {_FIELD.TYPE_INT64, _FIELD.TYPE_SINT64, _FIELD.TYPE_SFIXED64}
_UINT64_TYPES = {_FIELD.TYPE_UINT64, _FIELD.TYPE_FIXED64}
_INT32_TYPES = {_FIELD.TYPE_INT32, _FIELD.TYPE_SINT32, _FIELD.TYPE_SFIXED32}
_UINT32_TYPES = {_FIELD.TYPE_UINT32, _FIELD.TYPE_FIXED32}
# Well-known types the proto3 JSON mapping prints as a JSON scalar, not an object.
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {
        "type": "string",
        "format": "date-time",
        "example": "2026-01-31T12:00:00Z",
    },
    "google.protobuf.Duration": {
        "type": "string",
        "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$",
        "example": "1209600s",
    },
    "google.protobuf.FieldMask": {
        "type": "string",
        "description": "Comma-separated field paths (a FieldMask in JSON).",
        "example": "name,active",
    },
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "required": ["@type"],
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "int32", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$"},
    "google.protobuf.UInt64Value": {"type": "string", "format": "int64", "pattern": "^[0-9]+$"},
}
HTTP_BODY = "google.api.HttpBody"


@dataclass(frozen=True)
class Binding:
    verb: str  # get, post, ...
    path: str  # the template as in the proto, e.g. /v1/api/rewards/{reward.reward_id}
    body: str  # "", "*" or a field name
    response_body: str


def _bindings(rule: http_pb2.HttpRule) -> Iterator[Binding]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield Binding(rule.custom.kind.lower(), rule.custom.path, rule.body, rule.response_body)
    elif pattern is not None:
        yield Binding(pattern, str(getattr(rule, pattern)), rule.body, rule.response_body)
    for extra in rule.additional_bindings:
        yield from _bindings(extra)


class _Messages:
    """The descriptor set's messages and enums by full name, and their JSON schemas."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        for file in descriptor_set.file:
            prefix = f"{file.package}." if file.package else ""
            for message in file.message_type:
                self._add_message(prefix + message.name, message)
            for enum in file.enum_type:
                self.enums[prefix + enum.name] = enum
        self.schemas: dict[str, dict[str, Any]] = {}

    def _add_message(self, name: str, message: descriptor_pb2.DescriptorProto) -> None:
        self.messages[name] = message
        for nested in message.nested_type:
            self._add_message(f"{name}.{nested.name}", nested)
        for enum in message.enum_type:
            self.enums[f"{name}.{enum.name}"] = enum

    def ref(self, name: str) -> dict[str, Any]:
        """A schema for message `name`: inline for well-known types, else a $ref (adding the
        message, and what it refers to, to `schemas`)."""
        if name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[name])
        if name not in self.schemas:
            self.schemas[name] = {}  # placeholder: recursive messages terminate
            self.schemas[name] = self._message_schema(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def _message_schema(self, name: str) -> dict[str, Any]:
        message = self.messages[name]
        properties = {field.name: self.field_schema(field) for field in message.field}
        return {
            "type": "object",
            "title": name,
            "properties": properties,
            # The transcoder rejects a request naming a field the message does not have.
            "additionalProperties": False,
        }

    def map_entry(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        entry = self.messages.get(field.type_name.lstrip("."))
        return (
            field.label == _FIELD.LABEL_REPEATED and entry is not None and entry.options.map_entry
        )

    def scalar_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        kind = field.type
        if kind in _INT64_TYPES:
            return {"type": "string", "format": "int64", "pattern": "^-?[0-9]+$", "example": "120"}
        if kind in _UINT64_TYPES:
            return {"type": "string", "format": "int64", "pattern": "^[0-9]+$", "example": "120"}
        if kind in _INT32_TYPES:
            return {"type": "integer", "format": "int32"}
        if kind in _UINT32_TYPES:
            return {"type": "integer", "format": "int32", "minimum": 0}
        if kind in (_FIELD.TYPE_DOUBLE, _FIELD.TYPE_FLOAT):
            return {"type": "number"}
        if kind == _FIELD.TYPE_BOOL:
            return {"type": "boolean"}
        if kind == _FIELD.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if kind == _FIELD.TYPE_ENUM:
            enum = self.enums[field.type_name.lstrip(".")]
            return {"type": "string", "enum": [value.name for value in enum.value]}
        if kind in (_FIELD.TYPE_MESSAGE, _FIELD.TYPE_GROUP):
            return self.ref(field.type_name.lstrip("."))
        return {"type": "string"}

    def field_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if self.map_entry(field):
            entry = self.messages[field.type_name.lstrip(".")]
            value = next(f for f in entry.field if f.name == "value")
            return {"type": "object", "additionalProperties": self.scalar_schema(value)}
        schema = self.scalar_schema(field)
        if field.label == _FIELD.LABEL_REPEATED:
            return {"type": "array", "items": schema}
        return schema

    def field_path(self, message: str, path: str) -> descriptor_pb2.FieldDescriptorProto:
        """The field `path` (`a.b`) names in `message`."""
        current = self.messages[message]
        *parents, last = path.split(".")
        for part in parents:
            parent = next(f for f in current.field if f.name == part)
            current = self.messages[parent.type_name.lstrip(".")]
        return next(f for f in current.field if f.name == last)

    def query_fields(
        self, message: str, prefix: str = "", seen: frozenset[str] = frozenset()
    ) -> Iterator[tuple[str, descriptor_pb2.FieldDescriptorProto]]:
        """Every field a query parameter can set: scalars, repeated scalars, well-known scalar
        types, and those of nested messages as `a.b` (recursion stops at a message seen)."""
        for field in self.messages[message].field:
            name = prefix + field.name
            nested = field.type_name.lstrip(".")
            if field.type == _FIELD.TYPE_MESSAGE and nested not in _WELL_KNOWN:
                if self.map_entry(field) or field.label == _FIELD.LABEL_REPEATED:
                    continue  # not expressible in a query string
                if nested not in seen:
                    yield from self.query_fields(nested, f"{name}.", seen | {message})
                continue
            yield name, field


def _status_schemas() -> dict[str, Any]:
    return {
        STATUS_SCHEMA: {
            "type": "object",
            "title": STATUS_SCHEMA,
            "description": (
                "Every error, from a service or from the gateway itself: the google.rpc.Status "
                "of the failure. `code` is a google.rpc.Code (3 INVALID_ARGUMENT, 5 NOT_FOUND, "
                "7 PERMISSION_DENIED, 8 RESOURCE_EXHAUSTED, 16 UNAUTHENTICATED, ...); "
                "`details` holds google.rpc detail messages (BadRequest, ResourceInfo, "
                "PreconditionFailure, RetryInfo, RequestInfo), each with its `@type`."
            ),
            "properties": {
                "code": {"type": "integer", "format": "int32"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": _WELL_KNOWN["google.protobuf.Any"]},
            },
            "required": ["code", "message"],
            "example": {
                "code": 3,
                "message": "invalid request",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.BadRequest",
                        "field_violations": [
                            {"field": "idempotency_key", "description": "is required"}
                        ],
                    }
                ],
            },
        }
    }


def _error_responses() -> dict[str, Any]:
    status = {"$ref": f"#/components/schemas/{STATUS_SCHEMA}"}
    content = {"application/json": {"schema": status}}
    return {
        "default": {"description": "An error (google.rpc.Status).", "content": content},
        "429": {
            "description": "Over a rate limit: retry after `Retry-After` seconds.",
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
            "content": content,
        },
    }


def _path_parameter(field_path: str) -> str:
    """The OpenAPI name of a path variable: a nested field's last name (`{reward.reward_id}`
    is `{reward_id}`), since tools read a dotted name as attribute access; `x-proto-field`
    keeps the field it sets."""
    return field_path.rsplit(".", 1)[-1]


def openapi_path(template: str) -> str:
    """A google.api.http path template as an OpenAPI path."""
    return _PATH_PARAM_RE.sub(lambda m: "{" + _path_parameter(m.group(1)) + "}", template)


def _operation(
    messages: _Messages,
    service: str,
    method: descriptor_pb2.MethodDescriptorProto,
    binding: Binding,
    *,
    public: bool,
    index: int,
) -> dict[str, Any]:
    request = method.input_type.lstrip(".")
    response = method.output_type.lstrip(".")
    path_fields = [m.group(1) for m in _PATH_PARAM_RE.finditer(binding.path)]
    parameters: list[dict[str, Any]] = [
        {
            "name": _path_parameter(name),
            "in": "path",
            "required": True,
            "schema": messages.scalar_schema(messages.field_path(request, name)),
            **({"x-proto-field": name} if "." in name else {}),
        }
        for name in path_fields
    ]
    operation: dict[str, Any] = {
        "operationId": f"{service}.{method.name}" + (f".{index}" if index else ""),
        "summary": f"{service.rsplit('.', 1)[-1]}.{method.name}",
        "tags": [service],
        "description": f"gRPC: `/{service}/{method.name}`.",
    }
    if binding.body == "*":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": messages.ref(request)}},
        }
    elif binding.body:
        field = messages.field_path(request, binding.body)
        if field.type_name.lstrip(".") == HTTP_BODY:
            operation["requestBody"] = {
                "required": True,
                "description": "Passed to the service byte for byte, with its content type.",
                "content": {"application/json": {"schema": {}}},
            }
        else:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": messages.field_schema(field)}},
            }
    else:
        for name, field in messages.query_fields(request):
            if name in path_fields:
                continue
            schema = messages.field_schema(field)
            parameter: dict[str, Any] = {"name": name, "in": "query", "schema": schema}
            if schema.get("type") == "array":
                parameter |= {"style": "form", "explode": True}
            parameters.append(parameter)
    if parameters:
        operation["parameters"] = parameters
    if binding.response_body:
        body_schema = messages.field_schema(messages.field_path(response, binding.response_body))
    else:
        body_schema = messages.ref(response)
    if method.server_streaming:
        success = {
            "description": "A stream: one JSON message per line, sent as it arrives.",
            "content": {NDJSON: {"schema": body_schema}},
        }
    else:
        success = {"description": "OK", "content": {"application/json": {"schema": body_schema}}}
    operation["responses"] = {"200": success, **_error_responses()}
    if public:
        operation["security"] = []  # no token needed (rate limited per source address)
    return operation


def render(descriptor_set_path: Path, *, title: str = "LoyalNest REST API") -> dict[str, Any]:
    """The OpenAPI document as plain data."""
    descriptor_set = load_descriptor_set(descriptor_set_path)
    messages = _Messages(descriptor_set)
    paths: dict[str, dict[str, Any]] = {}
    for file in descriptor_set.file:
        for service_proto in file.service:
            service = f"{file.package}.{service_proto.name}"
            for method in service_proto.method:
                options: Any = method.options
                if not options.HasExtension(annotations_pb2.http):
                    continue
                access = (
                    options.Extensions[access_pb2.access]
                    if options.HasExtension(access_pb2.access)
                    else None
                )
                if access is not None and access.internal:
                    continue  # never routed from outside
                rule = options.Extensions[annotations_pb2.http]
                for index, binding in enumerate(_bindings(rule)):
                    paths.setdefault(openapi_path(binding.path), {})[binding.verb] = _operation(
                        messages,
                        service,
                        method,
                        binding,
                        public=bool(access is not None and access.public),
                        index=index,
                    )
    paths[OPENAPI_PATH] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "tags": ["gateway"],
            "security": [],
            "responses": {
                "200": {
                    "description": "The OpenAPI document.",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
            },
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": title,
            "version": "v1",
            "description": (
                "REST/JSON transcoded to gRPC by the Envoy gateway (generated from the "
                "descriptor set by loyalnest.gateway.openapi). Fields use their proto names; "
                "64-bit integers are strings; enums are names; errors are google.rpc.Status."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{BEARER: []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": dict(sorted((messages.schemas | _status_schemas()).items())),
        },
    }


def render_json(descriptor_set_path: Path) -> str:
    # Compact: it ships in the gateway's ConfigMap, which must stay well under 1 MiB.
    return json.dumps(render(descriptor_set_path), separators=(",", ":")) + "\n"


def write(descriptor_set_path: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_json(descriptor_set_path))
    return dest
