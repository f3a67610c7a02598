"""Delivery: the outbox worker, the retry policy and per-target rate limits."""
