"""What the operator sees of the store, the same through the API and the CLI: an outbox row as a view."""

from __future__ import annotations

from typing import Any

from notifier.clock import iso
from notifier.domain import ChangeRecord, DeliveryState
from notifier.redaction import redact


def delivery_view(row: dict[str, Any]) -> dict[str, Any]:
    change = ChangeRecord.decode(row.get("change"))
    return {
        "id": row["id"],
        "state": row["state"],
        "receiver": row["receiver"],
        "target": row["target"],
        "channel": row["channel"],
        "group_key": row["group_key"],
        "notification_id": row["notification_id"],
        "kind": row["kind"],
        "silent": bool(row["silent"]),
        "attempts": row["attempts"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "next_attempt_at": iso(row["next_attempt_at"]) if row["state"] == DeliveryState.PENDING else None,
        "sent_at": iso(row["sent_at"]),
        "last_error": redact(row["last_error"]) if row["last_error"] else row["last_error"],
        "provider_ref": row["provider_ref"],
        "change": {
            "new": change.new,
            "resolved": change.resolved,
            "still_firing": change.still_firing,
            "repeat": change.repeat,
        },
    }
