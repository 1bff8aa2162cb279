"""The Envoy bootstrap rendered from the real descriptor set (no Envoy process here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2

import loyalnest.gen
from loyalnest.gateway import GatewayConfig, Upstream, grpc_services_in_descriptor_set, render
from loyalnest.gateway.descriptors import services_in_descriptor_set
from loyalnest.gateway.edge import EdgePolicy, JwtProvider, ReadRateLimit
from loyalnest.gateway.envoy_config import (
    HIDE_GRPC_HEADERS_LUA,
    OTEL_CLUSTER,
    RECORD_GRPC_STATUS_LUA,
    REFLECTION_CLUSTER,
    unserved_services,
    upstreams_from_descriptor_set,
    write,
)

DESCRIPTOR_SET = Path(loyalnest.gen.__file__).parent / "loyalnest.binpb"
POINTS = "loyalnest.points.v1.PointsService"
TRANSCODER = "envoy.filters.http.grpc_json_transcoder"


def points_upstream(workers: int = 2, first_port: int = 50051) -> Upstream:
    endpoints = tuple(("127.0.0.1", first_port + i) for i in range(workers))
    return Upstream("points", (POINTS,), endpoints)


def config(**overrides: Any) -> GatewayConfig:
    fields: dict[str, Any] = {
        "descriptor_set_path": DESCRIPTOR_SET,
        "upstreams": (points_upstream(),),
    }
    return GatewayConfig(**(fields | overrides))


def connection_manager(bootstrap: dict[str, Any]) -> dict[str, Any]:
    (listener,) = bootstrap["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    assert hcm["name"] == "envoy.filters.network.http_connection_manager"
    return hcm["typed_config"]  # type: ignore[no-any-return]


def routes(bootstrap: dict[str, Any]) -> list[dict[str, Any]]:
    (vhost,) = connection_manager(bootstrap)["route_config"]["virtual_hosts"]
    return vhost["routes"]  # type: ignore[no-any-return]


def route_for(bootstrap: dict[str, Any], path: str) -> dict[str, Any]:
    """The route Envoy would pick for a (transcoded) gRPC path: first match wins."""
    for route in routes(bootstrap):
        match = route["match"]
        if match.get("path") == path or path.startswith(match.get("prefix", "\0")):
            return route
    raise AssertionError(f"no route for {path}")


def clusters(bootstrap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}


def http_filter(bootstrap: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in connection_manager(bootstrap)["http_filters"]:
        if entry["name"] == name:
            return entry["typed_config"]  # type: ignore[no-any-return]
    raise AssertionError(f"no {name} filter")


def test_discovers_services_bindings_and_streaming_from_descriptor_set() -> None:
    assert grpc_services_in_descriptor_set(DESCRIPTOR_SET)["loyalnest.points.v1"] == [POINTS]
    points = services_in_descriptor_set(DESCRIPTOR_SET)[POINTS]
    assert {m.name for m in points.methods} >= {"GetPointsBalance", "EarnPoints"}
    assert all(m.http_bound for m in points.methods)
    assert points.server_streaming_methods == ("StreamPoints",)
    stream = route_for(render(config()), "/loyalnest.points.v1.PointsService/StreamPoints")
    assert stream["route"]["timeout"] == "0s"  # a stream outlives any unary deadline


def test_listener_and_filter_order() -> None:
    bootstrap = render(config(listen_host="0.0.0.0", listen_port=18080, admin_port=19901))
    (listener,) = bootstrap["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 18080}
    assert bootstrap["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 19901,
    }
    hcm = connection_manager(bootstrap)
    assert hcm["codec_type"] == "AUTO"
    names = [f["name"] for f in hcm["http_filters"]]
    assert names == [
        "envoy.filters.http.cors",
        "envoy.filters.http.buffer",
        "loyalnest.drop_invalid_metadata_headers",
        "envoy.filters.http.grpc_web",
        "loyalnest.hide_grpc_headers_on_rest",
        TRANSCODER,
        "loyalnest.record_grpc_status",
        "envoy.filters.http.router",
    ]


def test_policy_filters_go_between_transcoder_and_router_in_design_order(tmp_path: Path) -> None:
    auth = Upstream("auth", ("loyalnest.auth.v1.AuthService",), (("127.0.0.1", 50060),))
    policy = EdgePolicy(
        jwt=JwtProvider(tmp_path / "jwks.json", "issuer"), rate_limit_upstream="points"
    )
    bootstrap = render(config(upstreams=(points_upstream(), auth), policy=policy))
    names = [f["name"] for f in connection_manager(bootstrap)["http_filters"]]
    assert names[-5:] == [
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.rbac",
        "envoy.filters.http.jwt_authn",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.router",
    ]
    assert names.index(TRANSCODER) < names.index("envoy.filters.http.local_ratelimit")


def test_public_rpcs_are_limited_per_direct_address_except_webhooks_and_jwks(
    tmp_path: Path,
) -> None:
    auth = Upstream("auth", ("loyalnest.auth.v1.AuthService",), (("127.0.0.1", 50060),))
    edge = Upstream("edge", ("loyalnest.edge.v1.EdgeService",), (("127.0.0.1", 50061),))
    policy = EdgePolicy(jwt=JwtProvider(tmp_path / "jwks.json", "issuer"))
    bootstrap = render(config(upstreams=(points_upstream(), auth, edge), policy=policy))
    limiter = http_filter(bootstrap, "envoy.filters.http.local_ratelimit")
    limited = {d["entries"][0]["value"] for d in limiter["descriptors"]}
    assert "/loyalnest.auth.v1.AuthService/Login" in limited
    assert "/loyalnest.auth.v1.AuthService/AdminLogin" in limited
    assert "/loyalnest.auth.v1.AuthService/GetJwks" not in limited
    assert "/loyalnest.edge.v1.EdgeService/ReceiveWebhook" not in limited
    assert "/loyalnest.auth.v1.AuthService/RevokeToken" not in limited  # needs a token
    for descriptor in limiter["descriptors"]:
        # An empty value: one bucket per distinct peer address.
        assert descriptor["entries"][1] == {"key": "remote_address", "value": ""}
    (action,) = [a for a in limiter["rate_limits"][0]["actions"] if "remote_address" in a]
    assert action == {"remote_address": {}}  # the TCP peer, never X-Forwarded-For
    assert "token_bucket" not in limiter  # unmatched requests are not limited here
    manager = connection_manager(bootstrap)
    assert manager["use_remote_address"] is True and "xff_num_trusted_hops" not in manager
    assert "envoy.filters.http.local_ratelimit" not in [
        f["name"]
        for f in connection_manager(
            render(
                config(
                    upstreams=(points_upstream(), auth),
                    policy=EdgePolicy(jwt=policy.jwt, public_rate_limit=None),
                )
            )
        )["http_filters"]
    ]


def test_reads_limited_in_envoy_per_merchant_writes_by_the_rate_limit_service(
    tmp_path: Path,
) -> None:
    edge = Upstream("edge", ("loyalnest.edge.v1.EdgeService",), (("127.0.0.1", 50061),))
    policy = EdgePolicy(
        jwt=JwtProvider(tmp_path / "jwks.json", "issuer"),
        rate_limit_upstream="edge",
        read_rate_limit=ReadRateLimit(burst=7, requests_per_second=3),
    )
    bootstrap = render(config(upstreams=(points_upstream(), edge), policy=policy))
    names = [f["name"] for f in connection_manager(bootstrap)["http_filters"]]
    # After jwt_authn (the merchant comes from the verified token), before the service call.
    reads_at = names.index(
        "envoy.filters.http.local_ratelimit", names.index("envoy.filters.http.jwt_authn")
    )
    assert (
        names.index("envoy.filters.http.jwt_authn")
        < reads_at
        < names.index("envoy.filters.http.ratelimit")
    )
    reads = connection_manager(bootstrap)["http_filters"][reads_at]["typed_config"]
    limited = {d["entries"][1]["value"] for d in reads["descriptors"]}
    balance = "/loyalnest.points.v1.PointsService/GetPointsBalance"
    earn = "/loyalnest.points.v1.PointsService/EarnPoints"
    assert balance in limited and earn not in limited
    for descriptor in reads["descriptors"]:
        assert descriptor["entries"][0] == {"key": "merchant_id", "value": ""}  # per merchant
        assert descriptor["token_bucket"] == {
            "max_tokens": 7,
            "tokens_per_fill": 3,
            "fill_interval": "1s",
        }
    ignored = {"vh_rate_limits": "IGNORE"}
    balance_route = route_for(bootstrap, balance)["typed_per_filter_config"]
    assert ignored.items() <= balance_route["envoy.filters.http.ratelimit"].items()
    earn_route = route_for(bootstrap, earn)
    assert "envoy.filters.http.ratelimit" not in earn_route.get("typed_per_filter_config", {})
    # Without read_rate_limit every RPC asks the service, as before.
    plain = render(
        config(
            upstreams=(points_upstream(), edge),
            policy=EdgePolicy(jwt=policy.jwt, rate_limit_upstream="edge"),
        )
    )
    assert "envoy.filters.http.ratelimit" not in route_for(plain, balance).get(
        "typed_per_filter_config", {}
    )


def test_local_replies_to_rest_callers_are_status_json() -> None:
    replies = connection_manager(render(config()))["local_reply_config"]
    assert "body_format" not in replies  # gRPC callers' replies stay as Envoy makes them
    by_status = {}
    for mapper in replies["mappers"]:
        rest, status = mapper["filter"]["and_filter"]["filters"]
        assert "or_filter" in rest
        comparison = status["status_code_filter"]["comparison"]
        by_status[(comparison["op"], comparison["value"]["default_value"])] = mapper
    for status, code in ((400, 3), (401, 16), (403, 7), (404, 5), (413, 8), (429, 8), (503, 14)):
        body = by_status[("EQ", status)]["body_format_override"]["json_format"]
        assert body["code"] == code and body["message"] == "%LOCAL_REPLY_BODY%"
    assert ("GE", 400) in by_status


def test_transcoder_options() -> None:
    transcoder = http_filter(render(config()), TRANSCODER)
    assert transcoder["proto_descriptor"] == str(DESCRIPTOR_SET.resolve())
    assert transcoder["services"] == [POINTS]
    assert transcoder["print_options"]["preserve_proto_field_names"] is True
    assert transcoder["print_options"]["always_print_primitive_fields"] is True
    # Server streams reach browsers as NDJSON (tests/integration/test_points_rest.py).
    assert transcoder["print_options"]["stream_newline_delimited"] is True
    assert transcoder["convert_grpc_status"] is True
    assert transcoder["match_incoming_request_route"] is False
    assert transcoder["request_validation_options"] == {
        "reject_unknown_method": True,
        "reject_unknown_query_parameters": True,
    }


def test_a_route_per_service_to_its_cluster_with_default_timeout() -> None:
    bootstrap = render(config())
    # UpdateReward declares no timeout and is not safe to repeat: the service's route.
    route = route_for(bootstrap, f"/{POINTS}/UpdateReward")
    assert route["match"] == {"prefix": f"/{POINTS}/"}
    assert route["route"]["cluster"] == "points"
    assert route["route"]["timeout"] == "15s"
    assert route["route"]["max_stream_duration"]["grpc_timeout_header_max"] == "15s"


def test_health_and_reflection_route_to_first_upstream_by_default() -> None:
    bootstrap = render(config())
    assert route_for(bootstrap, "/grpc.health.v1.Health/Check")["route"]["cluster"] == "points"
    watch = route_for(bootstrap, "/grpc.health.v1.Health/Watch")["route"]
    assert watch["timeout"] == "0s"
    for version in ("v1alpha", "v1"):
        path = f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo"
        route = route_for(bootstrap, path)["route"]
        assert (route["cluster"], route["timeout"]) == ("points", "0s")
    assert REFLECTION_CLUSTER not in clusters(bootstrap)


def test_reflection_endpoint_gets_its_own_cluster() -> None:
    bootstrap = render(config(reflection_endpoint=("127.0.0.1", 50060)))
    path = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert route_for(bootstrap, path)["route"]["cluster"] == REFLECTION_CLUSTER
    reflection = clusters(bootstrap)[REFLECTION_CLUSTER]
    assert reflection["health_checks"][0]["grpc_health_check"] == {"service_name": ""}


def test_last_route_catches_everything_so_cors_sees_a_route_entry() -> None:
    last = routes(render(config()))[-1]
    assert last["match"] == {"prefix": "/"}
    assert last["route"]["cluster"] == "points"  # a forwarding route, not direct_response
    with_reflection = render(config(reflection_endpoint=("127.0.0.1", 50060)))
    assert routes(with_reflection)[-1]["route"]["cluster"] == REFLECTION_CLUSTER


def test_cluster_per_upstream_one_endpoint_per_worker_with_grpc_health_checks() -> None:
    cluster = clusters(render(config()))["points"]
    assert cluster["type"] == "STATIC"
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    (locality,) = cluster["load_assignment"]["endpoints"]
    addresses = [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]]
    assert addresses == [
        {"address": "127.0.0.1", "port_value": 50051},
        {"address": "127.0.0.1", "port_value": 50052},
    ]
    options = cluster["typed_extension_protocol_options"]
    (http,) = options.values()
    assert "http2_protocol_options" in http["explicit_http_config"]
    (check,) = cluster["health_checks"]
    assert check["grpc_health_check"] == {"service_name": POINTS}
    assert check["interval"] == "2s"
    assert float(check["no_traffic_interval"].rstrip("s")) <= 5
    assert check["healthy_threshold"] >= 1
    assert check["unhealthy_threshold"] >= 2
    assert "connect_timeout" in cluster


def test_host_names_use_strict_dns() -> None:
    upstream = Upstream("points", (POINTS,), (("points.loyalnest.svc.cluster.local", 50051),))
    cluster = clusters(render(config(upstreams=(upstream,))))["points"]
    assert cluster["type"] == "STRICT_DNS"


def test_cors_for_configured_origins_with_grpc_web_headers() -> None:
    bootstrap = render(config(cors_allowed_origins=("http://localhost:5173", "https://a.test")))
    (vhost,) = connection_manager(bootstrap)["route_config"]["virtual_hosts"]
    cors = vhost["typed_per_filter_config"]["envoy.filters.http.cors"]
    assert cors["allow_origin_string_match"] == [
        {"exact": "http://localhost:5173"},
        {"exact": "https://a.test"},
    ]
    assert "x-grpc-web" in cors["allow_headers"]
    assert "grpc-status" in cors["expose_headers"]
    assert "grpc-message" in cors["expose_headers"]


def test_access_log_is_json_with_original_rest_method_and_path() -> None:
    (log,) = connection_manager(render(config()))["access_log"]
    fields = log["typed_config"]["log_format"]["json_format"]
    assert fields["path"] == "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
    assert fields["method"] == "%REQ(X-ENVOY-ORIGINAL-METHOD?:METHOD)%"
    keys = (
        "response_code",
        "grpc_status",
        "upstream_grpc_status",
        "duration_ms",
        "upstream_host",
        "trace_id",
    )
    for key in keys:
        assert key in fields


def test_clients_cannot_forge_the_original_method_or_path() -> None:
    route_config = connection_manager(render(config()))["route_config"]
    assert set(route_config["internal_only_headers"]) == {
        "x-envoy-original-method",
        "x-envoy-original-path",
    }


def test_access_log_to_a_file() -> None:
    (log,) = connection_manager(render(config(access_log_path="/tmp/gw.log")))["access_log"]
    assert log["typed_config"]["path"] == "/tmp/gw.log"


def test_tracing_only_with_a_collector() -> None:
    plain = render(config())
    assert "tracing" not in connection_manager(plain)
    assert OTEL_CLUSTER not in clusters(plain)
    traced = render(config(otel_collector=("127.0.0.1", 4317)))
    provider = connection_manager(traced)["tracing"]["provider"]
    assert provider["name"] == "envoy.tracers.opentelemetry"
    assert provider["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] == OTEL_CLUSTER
    assert OTEL_CLUSTER in clusters(traced)


def test_grpc_headers_hidden_only_on_non_grpc_responses() -> None:
    bootstrap = render(config())
    lua = http_filter(bootstrap, "loyalnest.hide_grpc_headers_on_rest")
    assert lua["default_source_code"]["inline_string"] == HIDE_GRPC_HEADERS_LUA
    assert '"application/grpc"' in HIDE_GRPC_HEADERS_LUA
    record = http_filter(bootstrap, "loyalnest.record_grpc_status")
    assert record["default_source_code"]["inline_string"] == RECORD_GRPC_STATUS_LUA
    for source in (HIDE_GRPC_HEADERS_LUA, RECORD_GRPC_STATUS_LUA):
        assert "envoy_on_request" not in source  # nothing to do on the request path


def descriptor_set_with(tmp_path: Path, file: descriptor_pb2.FileDescriptorProto) -> Path:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    fds.file.append(file)
    path = tmp_path / "extended.binpb"
    path.write_bytes(fds.SerializeToString())
    return path


def feed_service_file() -> descriptor_pb2.FileDescriptorProto:
    """A new service with a server-streaming RPC, as a future issue would add it."""
    file = descriptor_pb2.FileDescriptorProto(
        name="loyalnest/feed/v1/feed.proto",
        package="loyalnest.feed.v1",
        syntax="proto3",
        dependency=["google/api/annotations.proto"],
    )
    file.message_type.add(name="WatchRequest")
    file.message_type.add(name="Event")
    service = file.service.add(name="FeedService")
    watch = service.method.add(
        name="Watch",
        input_type=".loyalnest.feed.v1.WatchRequest",
        output_type=".loyalnest.feed.v1.Event",
        server_streaming=True,
    )
    watch.options.Extensions[annotations_pb2.http].CopyFrom(
        http_pb2.HttpRule(get="/v1/api/feed/watch")
    )
    service.method.add(
        name="Ping",
        input_type=".loyalnest.feed.v1.WatchRequest",
        output_type=".loyalnest.feed.v1.Event",
    )
    return file


def test_new_service_and_streaming_rpc_need_no_hand_edits(tmp_path: Path) -> None:
    descriptor_set = descriptor_set_with(tmp_path, feed_service_file())
    upstreams = upstreams_from_descriptor_set(
        descriptor_set,
        {"points": [("127.0.0.1", 50051)], "feed": [("127.0.0.1", 50061), ("127.0.0.1", 50062)]},
        require_all=False,  # other services of the real descriptor set are not under test
    )
    assert [(u.service, u.grpc_services) for u in upstreams] == [
        ("points", (POINTS,)),
        ("feed", ("loyalnest.feed.v1.FeedService",)),
    ]
    bootstrap = render(config(descriptor_set_path=descriptor_set, upstreams=upstreams))
    stream = route_for(bootstrap, "/loyalnest.feed.v1.FeedService/Watch")
    assert stream["match"] == {"path": "/loyalnest.feed.v1.FeedService/Watch"}
    assert (stream["route"]["cluster"], stream["route"]["timeout"]) == ("feed", "0s")
    assert stream["route"]["max_stream_duration"]["grpc_timeout_header_max"] == "0s"
    unary = route_for(bootstrap, "/loyalnest.feed.v1.FeedService/Ping")["route"]
    assert (unary["cluster"], unary["timeout"]) == ("feed", "15s")
    transcoder = http_filter(bootstrap, TRANSCODER)
    assert transcoder["services"] == [POINTS, "loyalnest.feed.v1.FeedService"]
    assert len(clusters(bootstrap)["feed"]["load_assignment"]["endpoints"][0]["lb_endpoints"]) == 2


def test_unserved_services_are_reported(tmp_path: Path) -> None:
    descriptor_set = descriptor_set_with(tmp_path, feed_service_file())
    unserved = unserved_services(config(descriptor_set_path=descriptor_set))
    assert "loyalnest.feed.v1.FeedService" in unserved
    assert POINTS not in unserved
    with pytest.raises(ValueError, match="endpoints missing"):
        upstreams_from_descriptor_set(descriptor_set, {"points": [("127.0.0.1", 1)]})
    partial = upstreams_from_descriptor_set(
        descriptor_set, {"points": [("127.0.0.1", 1)]}, require_all=False
    )
    assert [u.service for u in partial] == ["points"]
    with pytest.raises(ValueError, match="no services for"):
        upstreams_from_descriptor_set(descriptor_set, {"points": [], "nope": []}, require_all=False)


def testdescriptor_set_without_status_protos_is_rejected(tmp_path: Path) -> None:
    fds = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    kept = [f for f in fds.file if f.name != "google/rpc/error_details.proto"]
    del fds.file[:]
    fds.file.extend(kept)
    path = tmp_path / "no_details.binpb"
    path.write_bytes(fds.SerializeToString())
    with pytest.raises(ValueError, match="error_details"):
        render(config(descriptor_set_path=path))


@pytest.mark.parametrize(
    ("upstreams", "message"),
    [
        ((), "at least one upstream"),
        ((points_upstream(), points_upstream()), "duplicate"),
        (
            (points_upstream(), Upstream("other", (POINTS,), (("127.0.0.1", 1),))),
            "served by both",
        ),
    ],
)
def test_invalid_configs(upstreams: tuple[Upstream, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        config(upstreams=upstreams)


def test_invalid_upstreams_and_unknown_services() -> None:
    with pytest.raises(ValueError, match="no endpoints"):
        Upstream("points", (POINTS,), ())
    with pytest.raises(ValueError, match="invalid upstream name"):
        Upstream("Points!", (POINTS,), (("127.0.0.1", 1),))
    with pytest.raises(ValueError, match="invalid endpoint"):
        Upstream("points", (POINTS,), (("127.0.0.1", 0),))
    typo = Upstream("points", ("loyalnest.points.v1.PointService",), (("127.0.0.1", 1),))
    with pytest.raises(ValueError, match="regenerate"):
        render(config(upstreams=(typo,)))


def test_write_is_json_readable_as_yaml_or_json(tmp_path: Path) -> None:
    cfg = config()
    for name in ("envoy.yaml", "envoy.json"):
        assert json.loads(write(cfg, tmp_path / name).read_text()) == render(cfg)
    with pytest.raises(ValueError, match=r"\.json"):
        write(cfg, tmp_path / "envoy.txt")


def test_internal_rpcs_are_denied_for_every_peer_and_admin_rpcs_outside_the_allowlist() -> None:
    from loyalnest.gateway.edge import internal_paths, rbac_filter

    services = list(services_in_descriptor_set(DESCRIPTOR_SET).values())
    # Declared once, next to the RPC: (loyalnest.options.v1.access).internal.
    internal = [
        "/loyalnest.auth.v1.AuthService/GetShopAccessToken",
        # Customer pseudonyms, the edge's: relays and consumers only (BeginErasure: AdminCore).
        "/loyalnest.platform.v1.CustomerPseudonymService/BeginErasure",
        "/loyalnest.platform.v1.CustomerPseudonymService/Pseudonymize",
        "/loyalnest.platform.v1.CustomerPseudonymService/Resolve",
        # The personal-data contract every holder serves (AdminCore's only).
        "/loyalnest.platform.v1.PersonalDataService/EraseCustomer",
        "/loyalnest.platform.v1.PersonalDataService/EraseMerchant",
        "/loyalnest.platform.v1.PersonalDataService/ExportCustomer",
        # Whose birthday is on a day: Points' occasions job only.
        "/loyalnest.users.v1.UsersService/ListBirthdays",
    ]
    assert internal_paths(services) == internal
    rbac = rbac_filter(EdgePolicy(admin_allowed_cidrs=("10.0.0.0/8",)), services)
    assert rbac is not None
    policies = rbac["typed_config"]["rules"]["policies"]
    assert rbac["typed_config"]["rules"]["action"] == "DENY"
    denied = policies["internal-rpc"]
    assert denied["principals"] == [{"any": True}]
    (rules,) = denied["permissions"]
    assert [r["url_path"]["path"]["exact"] for r in rules["or_rules"]["rules"]] == internal
    # Not an admin RPC: the allowlist does not let anyone reach it.
    admin = policies["admin-rpc-outside-allowlist"]
    admin_paths = [
        r["url_path"]["path"]["exact"] for r in admin["permissions"][0]["or_rules"]["rules"]
    ]
    assert "/loyalnest.auth.v1.AuthService/GetShopAccessToken" not in admin_paths
