"""The HTTP surface: the webhook, health and metrics, and the operator's view of the outbox."""
