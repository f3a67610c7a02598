"""Intake: idempotency -> route -> dedup -> quiet hours -> enqueue, committed in one transaction per webhook."""
