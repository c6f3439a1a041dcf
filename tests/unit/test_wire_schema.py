"""Our compiled ext_proc schema (protos/ -> extproc._proto) against envoy-data-plane.

envoy-data-plane's betterproto2 classes are generated from Envoy's current API and serve as the
reference. Every message, field, enum value and RPC found in our generated descriptors must agree with
them on everything that reaches the wire: a wrong number would otherwise only show up as Envoy
silently misreading (or ignoring) a reply.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import warnings
from collections.abc import Iterable, Iterator
from datetime import timedelta

import betterproto2
import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.internal import api_implementation

import extproc._proto
from extproc import pb

with warnings.catch_warnings():  # envoy-data-plane trips pydantic deprecation warnings on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from envoy_data_plane.envoy.extensions.filters.http.ext_proc import v3 as ref_mode
    from envoy_data_plane.envoy.service.ext_proc import v3 as ref

RefBodyMode = ref_mode.ProcessingModeBodySendMode

# --- our descriptors, discovered from the generated modules --------------------------------------

FILES = [
    importlib.import_module(module.name).DESCRIPTOR
    for module in pkgutil.walk_packages(extproc._proto.__path__, extproc._proto.__name__ + ".")
    if module.name.endswith("_pb2")
]


def _walk(messages: Iterable[Descriptor]) -> Iterator[Descriptor]:
    for message in messages:
        if not message.GetOptions().map_entry:  # map<k, v> entries are checked with their map field
            yield message
            yield from _walk(message.nested_types)


MESSAGES = [m for f in FILES for m in _walk(f.message_types_by_name.values())]
ENUMS = [*(e for f in FILES for e in f.enum_types_by_name.values()),
         *(e for m in MESSAGES for e in m.enum_types)]
FIELDS = [field for message in MESSAGES for field in message.fields]
METHODS = [method for f in FILES for service in f.services_by_name.values() for method in service.methods]


# --- adapter to betterproto2 ----------------------------------------------------------------------
# envoy-data-plane has one module per proto package (envoy_data_plane.<package>) and names nested
# types by concatenation (ProcessingMode.BodySendMode -> ProcessingModeBodySendMode). Each message
# is a dataclass whose fields carry betterproto2.FieldMetadata (number, proto_type, group = oneof name,
# repeated, optional, map_meta = key/value metadata, unwrap = the well-known type behind a Python
# value such as timedelta); the class's _betterproto.cls_by_field resolves message/enum field types.

# FieldDescriptor.TYPE_X -> betterproto2.TYPE_X ("bool", "message", ...)
WIRE_TYPE = {getattr(FieldDescriptor, n): getattr(betterproto2, n)
             for n in dir(betterproto2) if n.startswith("TYPE_") and hasattr(FieldDescriptor, n)}


def reference(descriptor: Descriptor | EnumDescriptor) -> type:
    package = descriptor.file.package
    module = importlib.import_module(f"envoy_data_plane.{package}")
    return getattr(module, descriptor.full_name.removeprefix(package + ".").replace(".", ""))


def reference_field(field: FieldDescriptor) -> tuple[betterproto2.FieldMetadata, dict[str, type]]:
    """Metadata of the same-named field in the reference class, and that class's resolved field types."""
    cls = reference(field.containing_type)
    by_name = {f.name: betterproto2.FieldMetadata.get(f) for f in dataclasses.fields(cls)}
    assert field.name in by_name, f"{field.full_name} does not exist in {cls.__module__}.{cls.__name__}"
    return by_name[field.name], cls._betterproto.cls_by_field


def is_map(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def assert_same_value_type(field: FieldDescriptor, meta: betterproto2.FieldMetadata, resolved: type) -> None:
    assert meta.proto_type == WIRE_TYPE[field.type], f"{field.full_name}: type {meta.proto_type}"
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        actual = meta.unwrap() if meta.unwrap else resolved
        assert actual is reference(field.message_type), f"{field.full_name}: message type {actual}"
    elif field.type == FieldDescriptor.TYPE_ENUM:
        assert resolved is reference(field.enum_type), f"{field.full_name}: enum type {resolved}"


# --- schema tests ---------------------------------------------------------------------------------

def test_discovery_covers_everything_pb_exports() -> None:
    """Guards against the parametrized tests below passing vacuously."""
    def exported(kind: type) -> set[str]:
        return {obj.DESCRIPTOR.full_name for obj in vars(pb).values()
                if isinstance(getattr(obj, "DESCRIPTOR", None), kind)}

    assert "envoy.service.ext_proc.v3.ProcessingResponse" in exported(Descriptor)
    assert exported(Descriptor) <= {m.full_name for m in MESSAGES}
    assert "envoy.type.v3.StatusCode" in exported(EnumDescriptor)
    assert exported(EnumDescriptor) <= {e.full_name for e in ENUMS}
    assert len(FIELDS) > 50 and METHODS


def test_messages_use_fast_upb_backend() -> None:
    assert pb.IMPLEMENTATION == api_implementation.Type() == "upb"


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.full_name)
def test_message_exists_in_envoy(message: Descriptor) -> None:
    assert issubclass(reference(message), betterproto2.Message)


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.full_name)
def test_field_matches_envoy(field: FieldDescriptor) -> None:
    meta, resolved = reference_field(field)
    assert meta.number == field.number, f"{field.full_name}: Envoy has {meta.number}, we have {field.number}"
    oneof = field.containing_oneof.name if field.containing_oneof else None
    assert meta.group == oneof, f"{field.full_name}: oneof {meta.group!r}, ours {oneof!r}"
    if is_map(field):
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        assert meta.proto_type == betterproto2.TYPE_MAP, f"{field.full_name} is not a map in Envoy"
        assert meta.map_meta[0].proto_type == WIRE_TYPE[key.type]
        assert_same_value_type(value, meta.map_meta[1], resolved[f"{field.name}.value"])
    else:
        assert bool(meta.repeated) == field.is_repeated, f"{field.full_name}: repeated={meta.repeated}"
        assert bool(meta.optional) == field.has_presence, f"{field.full_name}: presence={meta.optional}"
        assert_same_value_type(field, meta, resolved[field.name])


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.full_name)
def test_enum_matches_envoy(enum: EnumDescriptor) -> None:
    cls = reference(enum)
    assert issubclass(cls, betterproto2.Enum)
    assert {v.name: v.number for v in enum.values} == {m.proto_name or m.name: m.value for m in cls}


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_rpc_matches_envoy(method) -> None:
    service = method.containing_service
    base = getattr(importlib.import_module(f"envoy_data_plane.{service.file.package}"), f"{service.name}Base")
    handlers = base().__mapping__()
    path = f"/{service.full_name}/{method.name}"
    assert path in handlers
    handler = handlers[path]
    assert handler.cardinality.value.client_streaming == method.client_streaming
    assert handler.cardinality.value.server_streaming == method.server_streaming
    assert handler.request_type is reference(method.input_type)
    assert handler.reply_type is reference(method.output_type)


def test_process_method_path() -> None:
    assert pb.PROCESS_METHOD == "/envoy.service.ext_proc.v3.ExternalProcessor/Process"


# --- round trips: built with our classes, parsed by envoy-data-plane ------------------------------

def _header_option(key: str, value: bytes) -> pb.HeaderValueOption:
    option = pb.HeaderValueOption(append_action=pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)
    option.header.key, option.header.raw_value = key, value
    return option


def _ref_set_headers(mutation) -> list[tuple[str, bytes, int]]:
    return [(o.header.key, o.header.raw_value, o.append_action) for o in mutation.set_headers]


def test_request_headers_round_trip() -> None:
    headers = [(":method", b"POST"), (":path", b"/v1/chat/completions"), ("content-type", b"text/plain")]
    ours = pb.ProcessingRequest(observability_mode=True)
    for key, value in headers:
        ours.request_headers.headers.headers.add(key=key, raw_value=value)
    ours.request_headers.end_of_stream = False
    ours.protocol_config.request_body_mode = pb.ProcessingMode.STREAMED
    ours.protocol_config.response_body_mode = pb.ProcessingMode.FULL_DUPLEX_STREAMED
    ours.protocol_config.send_body_without_waiting_for_header_response = True
    ours.attributes["envoy.filters.http.ext_proc"].update({"xds.route_name": "chat", "request.size": 42})
    ours.metadata_context.filter_metadata["llm.policy"].update({"tenant": "t1"})

    theirs = ref.ProcessingRequest.parse(ours.SerializeToString())

    assert [(h.key, h.raw_value) for h in theirs.request_headers.headers.headers] == headers
    assert theirs.request_headers.end_of_stream is False
    assert theirs.request_body is None and theirs.response_headers is None
    assert theirs.protocol_config.request_body_mode == RefBodyMode.STREAMED
    assert theirs.protocol_config.response_body_mode == RefBodyMode.FULL_DUPLEX_STREAMED
    assert theirs.protocol_config.send_body_without_waiting_for_header_response is True
    attributes = theirs.attributes["envoy.filters.http.ext_proc"].to_dict()
    assert attributes == {"xds.route_name": "chat", "request.size": 42}
    assert theirs.metadata_context.filter_metadata["llm.policy"].to_dict() == {"tenant": "t1"}
    assert theirs.observability_mode is True


@pytest.mark.parametrize("direction", ["request_body", "response_body"])
def test_body_round_trip(direction: str) -> None:
    ours = pb.ProcessingRequest()
    getattr(ours, direction).body = b'{"messages": [{"role": "user", "content": "hi"}]}'
    getattr(ours, direction).end_of_stream = True

    theirs = getattr(ref.ProcessingRequest.parse(ours.SerializeToString()), direction)

    assert theirs.body == b'{"messages": [{"role": "user", "content": "hi"}]}'
    assert theirs.end_of_stream is True


def test_immediate_response_round_trip() -> None:
    ours = pb.ProcessingResponse()
    immediate = ours.immediate_response
    immediate.status.code = pb.StatusCode.Forbidden
    immediate.headers.set_headers.append(_header_option("content-type", b"application/json"))
    immediate.headers.remove_headers.append("x-upstream-secret")
    immediate.body = b'{"error": "blocked"}'
    immediate.grpc_status.status = 7
    immediate.details = "llm_policy_blocked"
    ours.dynamic_metadata.update({"llm.policy": {"decision": "deny"}})

    theirs = ref.ProcessingResponse.parse(ours.SerializeToString())

    assert theirs.immediate_response.status.code == 403
    assert _ref_set_headers(theirs.immediate_response.headers) == [
        ("content-type", b"application/json", pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)]
    assert theirs.immediate_response.headers.remove_headers == ["x-upstream-secret"]
    assert theirs.immediate_response.body == b'{"error": "blocked"}'
    assert theirs.immediate_response.grpc_status.status == 7
    assert theirs.immediate_response.details == "llm_policy_blocked"
    assert theirs.dynamic_metadata.to_dict() == {"llm.policy": {"decision": "deny"}}
    assert theirs.streamed_immediate_response is None


def test_body_mutation_mode_override_and_timeout_round_trip() -> None:
    ours = pb.ProcessingResponse()
    common = ours.response_body.response
    common.status = pb.CommonResponse.CONTINUE_AND_REPLACE
    common.header_mutation.set_headers.append(_header_option("content-length", b"8"))
    common.body_mutation.body = b"redacted"
    common.clear_route_cache = True
    ours.mode_override.request_body_mode = pb.ProcessingMode.NONE
    ours.mode_override.response_header_mode = pb.ProcessingMode.SKIP
    ours.mode_override.response_body_mode = pb.ProcessingMode.BUFFERED
    ours.mode_override.response_trailer_mode = pb.ProcessingMode.SEND
    ours.override_message_timeout.FromMilliseconds(2500)

    theirs = ref.ProcessingResponse.parse(ours.SerializeToString())

    common_ref = theirs.response_body.response
    assert common_ref.status == ref.CommonResponseResponseStatus.CONTINUE_AND_REPLACE
    assert _ref_set_headers(common_ref.header_mutation) == [
        ("content-length", b"8", pb.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)]
    assert common_ref.body_mutation.body == b"redacted"
    assert common_ref.body_mutation.clear_body is None
    assert common_ref.clear_route_cache is True
    mode = theirs.mode_override
    assert (mode.request_header_mode, mode.response_header_mode, mode.request_trailer_mode,
            mode.response_trailer_mode) == (0, 2, 0, 1)  # DEFAULT, SKIP, DEFAULT, SEND
    assert (mode.request_body_mode, mode.response_body_mode) == (RefBodyMode.NONE, RefBodyMode.BUFFERED)
    assert theirs.override_message_timeout == timedelta(milliseconds=2500)
    assert theirs.request_body is None


def test_clear_body_and_streamed_responses_round_trip() -> None:
    cleared = pb.ProcessingResponse()
    cleared.request_body.response.body_mutation.clear_body = True
    streamed = pb.ProcessingResponse()
    streamed.response_body.response.body_mutation.streamed_response.body = b"data: {}\n\n"
    streamed.response_body.response.body_mutation.streamed_response.end_of_stream = True
    local = pb.ProcessingResponse()  # field 11 in Envoy 1.40 (older stubs used 11 for request_drain)
    local.streamed_immediate_response.headers_response.headers.headers.add(key=":status", raw_value=b"200")

    cleared_ref, streamed_ref, local_ref = (ref.ProcessingResponse.parse(m.SerializeToString())
                                            for m in (cleared, streamed, local))

    assert cleared_ref.request_body.response.body_mutation.clear_body is True
    chunk = streamed_ref.response_body.response.body_mutation.streamed_response
    assert (chunk.body, chunk.end_of_stream) == (b"data: {}\n\n", True)
    headers = local_ref.streamed_immediate_response.headers_response.headers.headers
    assert [(h.key, h.raw_value) for h in headers] == [(":status", b"200")]
