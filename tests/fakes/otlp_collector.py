"""An OpenTelemetry collector on loopback (an outside system): OTLP/HTTP traces, decoded."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.fakes.http import LoopbackServer, Request, Response


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector decoded it, with the resource that sent it."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    role: str  # the resource's agenttasks.role
    instance: str  # the resource's service.instance.id (host-pid)
    attributes: dict[str, object]


@dataclass
class Collector:
    """Every span received on /v1/traces, in arrival order."""

    spans: list[ReceivedSpan] = field(default_factory=list)
    refused: int = 0  # requests that were not an OTLP trace export

    async def handle(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/traces":
            self.refused += 1
            return Response(404)
        body = request.body
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            role=str(resource.get("agenttasks.role", "")),
                            instance=str(resource.get("service.instance.id", "")),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(200, {"content-type": "application/x-protobuf"}, answer)


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


def collector_server(collector: Collector) -> LoopbackServer:
    """The loopback server to run (`async with`) for `collector`."""
    return LoopbackServer(collector.handle)
