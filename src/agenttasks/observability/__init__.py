"""Structured logs and traces: one log setup for every role, W3C trace context across processes."""
