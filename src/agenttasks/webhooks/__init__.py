"""Webhooks: registered endpoints, the outbox of deliveries, and the deliverer role."""
