"""Read models: one module per model, built from bus payloads, live (NATS) or replayed (store)."""
