"""What an outbox row stands for: the message its stored body and change record tell, as the worker sends it and
the web view shows it again. Pure: the body and the record come in, a Message goes out."""

from __future__ import annotations

import dataclasses

import msgspec

from notifier.alertmanager import WebhookAlert, WebhookPayload, corrected, to_group
from notifier.domain import AlertGroup, AlertStatus, Change, ChangeRecord, Delivery, Message, MessageKind


def build_message(
    row: Delivery, change: ChangeRecord, body: bytes, send_resolved: bool, thread_ref: str | None
) -> Message:
    """The message a row stands for (its change record decoded): the newest state of its group, plus alerts that
    left the group while it waited, minus resolved alerts when the receiver does not want them; or a digest's
    content."""
    if row.kind is MessageKind.DIGEST:
        empty = AlertGroup(
            receiver="digest",
            status=AlertStatus.FIRING,
            group_key=row.group_key,
            group_labels={},
            common_labels={},
            common_annotations={},
            external_url="",
            alerts=(),
        )
        return Message(
            delivery_id=row.id,
            receiver=row.receiver,
            target=row.target,
            group=empty,
            kind=MessageKind.DIGEST,
            digest=msgspec.json.decode(body),
        )
    payload = corrected(msgspec.json.decode(body, type=WebhookPayload), change.stale)
    gone = [msgspec.convert(a, WebhookAlert) for a in change.gone]
    if gone:
        payload = msgspec.structs.replace(payload, alerts=[*payload.alerts, *gone])
    group: AlertGroup = to_group(payload)
    if not send_resolved and group.firing:
        group = dataclasses.replace(group, alerts=group.firing)
    ch = Change(still_firing=len(group.firing)) if change.repeat else change.counts()
    return Message(
        delivery_id=row.id,
        receiver=row.receiver,
        target=row.target,
        group=group,
        kind=row.kind,
        silent=row.silent,
        change=ch,
        thread_ref=thread_ref,
        part=row.parts_sent,
        edit_ref=change.edit_ref,
        note=change.note,
    )
