"""OpenTelemetry spans exported over OTLP/HTTP; imported only when an endpoint is configured.

The SDK's tracer provider and a batching exporter are set up once per process; tracing.py's
spans become OpenTelemetry spans whose parents are the traceparents our events and NATS
headers carry (there is no OpenTelemetry instrumentation of nats-py: we propagate ourselves).
"""

from __future__ import annotations

import atexit
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from agenttasks.observability import tracing
from agenttasks.observability.traceparent import TraceContext

EXPORT_DELAY_MS = 1000  # spans reach the collector within about a second

_KINDS = {"relay publish": SpanKind.PRODUCER}


def start(endpoint: str, service_name: str, role: str) -> None:
    """Exports this process's spans to `endpoint` (OTLP/HTTP) until it exits."""
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "agenttasks",
            "service.instance.id": f"{socket.gethostname()}-{os.getpid()}",
            "agenttasks.role": role,
        }
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
    trace.set_tracer_provider(provider)
    atexit.register(provider.shutdown)  # the spans still batched go out before the exit
    tracing.use(_span)


def current() -> TraceContext | None:
    """The context of the OpenTelemetry span under way (the HTTP server span), if any."""
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return _ours(context)


@contextmanager
def _span(
    name: str, parent: TraceContext | None, attributes: Mapping[str, Any]
) -> Iterator[TraceContext]:
    tracer = trace.get_tracer("agenttasks")
    parent_context = None
    if parent is not None:
        remote = SpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if parent.sampled else 0),
        )
        parent_context = trace.set_span_in_context(NonRecordingSpan(remote))
    kind = _KINDS.get(name, SpanKind.CONSUMER if parent is not None else SpanKind.INTERNAL)
    with tracer.start_as_current_span(
        name, context=parent_context, kind=kind, attributes=dict(attributes)
    ) as span:
        yield _ours(span.get_span_context())


def _ours(context: SpanContext) -> TraceContext:
    return TraceContext(
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        context.trace_flags.sampled,
    )
