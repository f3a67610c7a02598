"""The store's side of chat actions: alert groups as /alerts lists them, the actions behind buttons, who
acknowledged or silenced a group, the log of every action, and the messages an action edits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import msgspec
from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain import (
    ChangeRecord,
    ChatAction,
    Delivery,
    DeliveryState,
    GroupActions,
    GroupLifecycles,
    MessageKind,
    Severity,
)
from notifier.store.ids import new_id
from notifier.store.repository import dialect_insert
from notifier.store.tables import (
    action_log,
    alert_groups,
    chat_actions,
    deliveries,
    group_acks,
    group_lifecycles,
    group_silences,
    own_silences,
    seen_requests,
)


class AlertGroupRecord(msgspec.Struct, kw_only=True):
    """An alert group as the intake last saw it (the `alert_groups` table)."""

    group_hash: str
    am_receiver: str
    group_key: str
    labels: dict[str, str]
    title: str
    severity: Severity
    firing: int
    firing_since: float | None
    updated_at: float
    receivers: list[str] = msgspec.field(default_factory=list)  # where its notifications route: who may act on it


class OwnSilence(msgspec.Struct, kw_only=True, frozen=True):
    """A silence this notifier made for a group (the `own_silences` table)."""

    silence_id: str
    group_hash: str
    created_by: str
    ends_at: float
    created_at: float


class StoredAction(msgspec.Struct, kw_only=True):
    """What a button stands for (the `chat_actions` table)."""

    id: str
    group_hash: str
    action: ChatAction
    duration: float | None = None
    silence_id: str | None = None
    created_at: float = 0.0


# -- the intake -------------------------------------------------------------------------------------------------------


def record_groups(conn: Connection, groups: Sequence[AlertGroupRecord]) -> None:
    """The groups as their newest webhooks tell them; a group that keeps firing keeps its `firing_since`."""
    if not groups:
        return
    ins = dialect_insert(conn.dialect.name, alert_groups)
    stmt = ins.on_conflict_do_update(
        index_elements=[alert_groups.c.group_hash],
        set_={
            "labels": ins.excluded.labels,
            "title": ins.excluded.title,
            "severity": ins.excluded.severity,
            "firing": ins.excluded.firing,
            "updated_at": ins.excluded.updated_at,
            "receivers": ins.excluded.receivers,
            # NULL once resolved; while it fires, the start of the firing that began first
            "firing_since": case(
                (ins.excluded.firing_since.is_(None), None),
                else_=func.coalesce(alert_groups.c.firing_since, ins.excluded.firing_since),
            ),
        },
    )
    rows = []
    for g in groups:
        row = msgspec.structs.asdict(g)
        row["labels"] = msgspec.json.encode(g.labels).decode()
        row["receivers"] = msgspec.json.encode(g.receivers).decode()
        row["severity"] = g.severity.value
        rows.append(row)
    conn.execute(stmt, rows)


def clear_acks(conn: Connection, hashes: Collection[str], *, silences: bool = False) -> None:
    """A group that changed (an alert fired anew) or resolved is no longer acknowledged; a resolved one's silence
    record goes too (Alertmanager ends the silence itself)."""
    if not hashes:
        return
    conn.execute(delete(group_acks).where(group_acks.c.group_hash.in_(list(hashes))))
    if silences:
        conn.execute(delete(group_silences).where(group_silences.c.group_hash.in_(list(hashes))))


def acked(conn: Connection, hashes: Collection[str]) -> set[str]:
    if not hashes:
        return set()
    q = select(group_acks.c.group_hash).where(group_acks.c.group_hash.in_(list(hashes)))
    return {h for (h,) in conn.execute(q)}


# -- buttons and what they stand for ----------------------------------------------------------------------------------


def keep_actions(conn: Connection, actions: Sequence[StoredAction], now: float) -> None:
    """The actions behind the buttons of a message just sent. An id is never renewed: a button lives
    `actions.button_lifetime` from the moment it was first kept, and once expired it stays expired."""
    if not actions:
        return
    ins = dialect_insert(conn.dialect.name, chat_actions)
    stmt = ins.on_conflict_do_nothing(index_elements=[chat_actions.c.id])
    rows = [{**msgspec.structs.asdict(a), "action": a.action.value, "created_at": now} for a in actions]
    conn.execute(stmt, rows)


def get_action(conn: Connection, action_id: str) -> StoredAction | None:
    row = conn.execute(select(chat_actions).where(chat_actions.c.id == action_id)).mappings().first()
    if row is None:
        return None
    return StoredAction(**{**row, "action": ChatAction(row["action"])})


def get_group(conn: Connection, group_hash: str) -> AlertGroupRecord | None:
    row = conn.execute(select(alert_groups).where(alert_groups.c.group_hash == group_hash)).mappings().first()
    return _group(row) if row is not None else None


def _group(row: Any) -> AlertGroupRecord:
    return AlertGroupRecord(
        **{
            **row,
            "labels": msgspec.json.decode(row["labels"]),
            "receivers": msgspec.json.decode(row["receivers"] or "[]"),
            "severity": Severity.parse(row["severity"]),
        }
    )


def group_fingerprints(conn: Connection, group_hash: str) -> set[str]:
    """The fingerprints of the alerts the group holds, as its newest notifications told them: what a silence made
    for the group may cover."""
    blob = conn.execute(
        select(group_lifecycles.c.lifecycles).where(group_lifecycles.c.group_hash == group_hash)
    ).scalar()
    if blob is None:
        return set()
    known = msgspec.msgpack.decode(blob, type=GroupLifecycles)
    return set(known.known)


# -- the silences this notifier made ----------------------------------------------------------------------------------


def add_own_silence(conn: Connection, silence: OwnSilence) -> None:
    """Once per silence: a press tried again after a commit whose outcome it could not learn adds nothing."""
    ins = dialect_insert(conn.dialect.name, own_silences).values(**msgspec.structs.asdict(silence))
    conn.execute(ins.on_conflict_do_nothing(index_elements=[own_silences.c.silence_id]))


def own_silence(conn: Connection, silence_id: str) -> OwnSilence | None:
    row = conn.execute(select(own_silences).where(own_silences.c.silence_id == silence_id)).mappings().first()
    return OwnSilence(**row) if row is not None else None


async def own_active_silences(conn: AsyncConnection, now: float) -> list[OwnSilence]:
    """The silences this notifier made that have not ended, the one that ends first first."""
    q = select(own_silences).where(own_silences.c.ends_at > now).order_by(own_silences.c.ends_at)
    return [OwnSilence(**r) for r in (await conn.execute(q)).mappings()]


def end_own_silence(conn: Connection, silence_id: str, now: float) -> None:
    conn.execute(update(own_silences).where(own_silences.c.silence_id == silence_id).values(ends_at=now))


# -- replays ----------------------------------------------------------------------------------------------------------


def first_sight(conn: Connection, key: str, now: float, ttl: float) -> bool:
    """Whether a request (a Slack request's body, a Telegram update's id) is seen for the first time; it is
    remembered for `ttl` seconds, across replicas."""
    conn.execute(delete(seen_requests).where(seen_requests.c.key == key, seen_requests.c.expires_at <= now))
    ins = dialect_insert(conn.dialect.name, seen_requests).values(key=key, expires_at=now + ttl)
    return bool(conn.execute(ins.on_conflict_do_nothing(index_elements=[seen_requests.c.key])).rowcount)


# -- acknowledgements and silences ------------------------------------------------------------------------------------


def set_ack(conn: Connection, group_hash: str, actor: str, channel: str, now: float) -> bool:
    """Acknowledge; False when the group was acknowledged already (the first one stands)."""
    ins = dialect_insert(conn.dialect.name, group_acks).values(
        group_hash=group_hash, actor=actor, channel=channel, at=now
    )
    return bool(conn.execute(ins.on_conflict_do_nothing(index_elements=[group_acks.c.group_hash])).rowcount)


def claim_silence(
    conn: Connection, group_hash: str, actor: str, now: float, hold: float
) -> tuple[bool, str, float, str]:
    """Take the right to silence a group, so that two presses make one silence: (ours, silence id, until, by).
    Not ours: the group is silenced already (its id and end) or someone's silence is being made (an empty id).
    Ours: a placeholder holds the group for `hold` seconds, until set_silence or clear_silence."""
    conn.execute(delete(group_silences).where(group_silences.c.group_hash == group_hash, group_silences.c.until <= now))
    ins = dialect_insert(conn.dialect.name, group_silences).values(
        group_hash=group_hash, silence_id="", actor=actor, until=now + hold, at=now
    )
    if conn.execute(ins.on_conflict_do_nothing(index_elements=[group_silences.c.group_hash])).rowcount:
        return True, "", now + hold, actor
    row = conn.execute(
        select(group_silences.c.silence_id, group_silences.c.until, group_silences.c.actor).where(
            group_silences.c.group_hash == group_hash
        )
    ).one()
    return False, str(row[0]), float(row[1]), str(row[2])


def set_silence(conn: Connection, group_hash: str, silence_id: str, actor: str, until: float, now: float) -> None:
    ins = dialect_insert(conn.dialect.name, group_silences).values(
        group_hash=group_hash, silence_id=silence_id, actor=actor, until=until, at=now
    )
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[group_silences.c.group_hash],
            set_={"silence_id": silence_id, "actor": actor, "until": until, "at": now},
        )
    )


def may_record_silence(conn: Connection, group_hash: str, silence_id: str, claimed_at: float, now: float) -> bool:
    """Whether a press whose claim on the group was placed at `claimed_at` may still record its silence: the group
    holds that claim, that silence, or nothing in force (another press's claim or silence is left alone)."""
    row = conn.execute(
        select(group_silences.c.silence_id, group_silences.c.at, group_silences.c.until).where(
            group_silences.c.group_hash == group_hash
        )
    ).first()
    if row is None or float(row[2]) <= now or row[0] == silence_id:
        return True
    return row[0] == "" and float(row[1]) == claimed_at


def clear_silence(conn: Connection, group_hash: str | None = None, silence_id: str | None = None) -> None:
    q = delete(group_silences)
    q = q.where(group_silences.c.group_hash == group_hash) if group_hash else q
    q = q.where(group_silences.c.silence_id == silence_id) if silence_id else q
    conn.execute(q)


def silence_group(conn: Connection, silence_id: str) -> str | None:
    """The group a silence was made for from the chat, if it was."""
    q = select(group_silences.c.group_hash).where(group_silences.c.silence_id == silence_id)
    row = conn.execute(q).first()
    return str(row[0]) if row is not None else None


def group_silence(conn: Connection, group_hash: str, now: float) -> tuple[str, float] | None:
    """The silence made from the chat for this group, while it lasts: (id, until)."""
    q = select(group_silences.c.silence_id, group_silences.c.until).where(
        group_silences.c.group_hash == group_hash, group_silences.c.until > now, group_silences.c.silence_id != ""
    )
    row = conn.execute(q).first()
    return (str(row[0]), float(row[1])) if row is not None else None


def group_actions(conn: Connection, hashes: Collection[str], now: float) -> dict[str, GroupActions]:
    """Acknowledgement and silence of each group that has either (silence links are the caller's)."""
    if not hashes:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for gh, actor, at in conn.execute(
        select(group_acks.c.group_hash, group_acks.c.actor, group_acks.c.at).where(
            group_acks.c.group_hash.in_(list(hashes))
        )
    ):
        out.setdefault(gh, {}).update(acked_by=actor, acked_at=at)
    for gh, sid, actor, until in conn.execute(
        select(
            group_silences.c.group_hash, group_silences.c.silence_id, group_silences.c.actor, group_silences.c.until
        ).where(group_silences.c.group_hash.in_(list(hashes)), group_silences.c.until > now)
    ):
        out.setdefault(gh, {}).update(silence_id=sid, silenced_by=actor, silenced_until=until)
    return {gh: GroupActions(**values) for gh, values in out.items()}


def log_action(
    conn: Connection,
    *,
    now: float,
    channel: str,
    actor: str,
    action: str,
    group_hash: str | None,
    outcome: str,
    detail: str,
) -> None:
    conn.execute(
        action_log.insert().values(
            id=new_id(),
            at=now,
            channel=channel,
            actor=actor,
            action=action,
            group_hash=group_hash,
            outcome=outcome,
            detail=detail[:1000],
        )
    )


# -- the messages an action edits -------------------------------------------------------------------------------------


def queue_edits(conn: Connection, group_hash: str, targets: Collection[str], now: float) -> int:
    """One EDIT message per target that has a sent message of the group: its newest, shown again with the group's
    acknowledgement and silence. Returns how many were queued."""
    if not targets:
        return 0
    q = (
        select(deliveries)
        .where(
            deliveries.c.target.in_(list(targets)),
            deliveries.c.group_hash == group_hash,
            deliveries.c.state == DeliveryState.SENT.value,
            deliveries.c.kind == MessageKind.ALERT.value,
            deliveries.c.provider_ref.is_not(None),
        )
        .order_by(deliveries.c.sent_at)
    )
    newest: dict[str, Delivery] = {}
    for row in conn.execute(q).mappings():
        d = Delivery.from_row(row)
        if d.provider_ref and not d.provider_ref.startswith("storm:"):
            newest[d.target] = d
    for d in newest.values():
        change = msgspec.structs.replace(ChangeRecord.decode(d.change), edit_ref=d.provider_ref, edit_group=group_hash)
        edit = Delivery.new(
            id=new_id(),
            notification_id=d.notification_id,
            receiver=d.receiver,
            target=d.target,
            channel=d.channel,
            group_key=d.group_key,
            group_hash=f"edit-{new_id()}",  # its own: edits neither wait for nor hold back the group's messages
            change=change,
            now=now,
            kind=MessageKind.EDIT,
        )
        conn.execute(deliveries.insert(), edit.row())
    return len(newest)


def acks_between(conn: Connection, start: float | None, end: float) -> list[tuple[dict[str, str], str, float]]:
    """Acknowledgements made from the chat in (start, end]: the group's labels (empty if it is gone), who, when."""
    q = (
        select(alert_groups.c.labels, action_log.c.actor, action_log.c.at)
        .select_from(action_log.outerjoin(alert_groups, alert_groups.c.group_hash == action_log.c.group_hash))
        .where(
            action_log.c.action == ChatAction.ACK.value,
            action_log.c.outcome == "done",
            action_log.c.at <= end,
        )
        .order_by(action_log.c.at)
    )
    if start is not None:
        q = q.where(action_log.c.at > start)
    return [
        (msgspec.json.decode(labels) if labels else {}, str(actor), float(at)) for labels, actor, at in conn.execute(q)
    ]


# -- reads for the commands -------------------------------------------------------------------------------------------


async def firing_groups(
    conn: AsyncConnection, limit: int, resolved_since: float | None = None
) -> list[AlertGroupRecord]:
    """Firing groups (and those resolved since `resolved_since`), the most severe first, then the oldest."""
    rank = case((alert_groups.c.severity == "critical", 0), (alert_groups.c.severity == "warning", 1), else_=2)
    shown = alert_groups.c.firing > 0
    q = (
        select(alert_groups)
        .where(shown if resolved_since is None else or_(shown, alert_groups.c.updated_at >= resolved_since))
        .order_by(
            rank, func.coalesce(alert_groups.c.firing_since, alert_groups.c.updated_at), alert_groups.c.group_hash
        )
        .limit(limit)
    )
    return [_group(r) for r in (await conn.execute(q)).mappings()]


async def groups_by_hash(conn: AsyncConnection, hashes: Collection[str]) -> dict[str, AlertGroupRecord]:
    if not hashes:
        return {}
    q = select(alert_groups).where(alert_groups.c.group_hash.in_(list(hashes)))
    return {r["group_hash"]: _group(r) for r in (await conn.execute(q)).mappings()}


async def read_group_actions(conn: AsyncConnection, hashes: Collection[str], now: float) -> dict[str, GroupActions]:
    result: dict[str, GroupActions] = await conn.run_sync(lambda c: group_actions(c, hashes, now))
    return result


async def outbox_status(
    conn: AsyncConnection, receivers: Collection[str] | None = None
) -> tuple[int, int, dict[str, float]]:
    """Messages waiting, dead letters, and the last delivery per channel: of every receiver, or of these."""
    mine: tuple[Any, ...] = () if receivers is None else (deliveries.c.receiver.in_(list(receivers)),)
    waiting = await conn.scalar(
        select(func.count()).where(
            deliveries.c.state.in_([DeliveryState.PENDING.value, DeliveryState.SENDING.value]), *mine
        )
    )
    dead = await conn.scalar(select(func.count()).where(deliveries.c.state == DeliveryState.DEAD.value, *mine))
    last = {
        str(ch): float(at)
        for ch, at in (
            await conn.execute(
                select(deliveries.c.channel, func.max(deliveries.c.sent_at))
                .where(deliveries.c.state == DeliveryState.SENT.value, deliveries.c.sent_at.is_not(None), *mine)
                .group_by(deliveries.c.channel)
            )
        ).all()
    }
    return int(waiting or 0), int(dead or 0), last
