"""The store's side of escalation (notifier/escalation.py decides): a chain per (alert group, route with steps),
armed and followed by the intake, carried step by step by the escalation ticker. A chain's row is changed only in
the transaction that acts on it (the messages a step queues are written with the step's advance), and on
PostgreSQL a replica takes the chains it acts on with FOR UPDATE SKIP LOCKED: a step fires once, across replicas
and restarts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import StrEnum

import msgspec
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.domain import ChangeRecord, DeliveryState, EventKind, MessageKind, TimelineEvent
from notifier.store.ids import new_id
from notifier.store.repository import dialect_insert
from notifier.store.tables import deliveries, escalations, group_acks
from notifier.store.timeline import record

TAKEN_BACK = "taken-back"  # the provider reference of a page taken back before it went out


class ChainState(StrEnum):
    ARMED = "armed"  # waiting for the group's first message to the route's receivers to be sent
    RUNNING = "running"  # a step is due at due_at
    DONE = "done"  # every step fired; the group still fires
    ENDED = "ended"  # acknowledged or silenced
    RESOLVED = "resolved"  # the group resolved: the receivers the steps paged are still to be told
    CLOSED = "closed"


class Step(msgspec.Struct, frozen=True, array_like=True):
    after: float
    receivers: tuple[str, ...]
    respect_quiet_hours: bool = False


class Chain(msgspec.Struct, kw_only=True):
    """One escalation chain (the `escalations` table)."""

    group_hash: str
    route_path: str
    group_key: str
    state: ChainState
    armed_at: float
    started_at: float | None
    step: int
    due_at: float | None  # running: when step `step` fires; resolved: when it was due, had it not paged by then
    steps: tuple[Step, ...]
    route_receivers: tuple[str, ...]
    quiet_schedule: str | None
    paged: tuple[str, ...]
    notification_id: str
    ended: str | None
    updated_at: float


class Arm(msgspec.Struct, frozen=True, kw_only=True):
    """What the intake tells of a group on a route with steps: an alert of it fired anew (arm the chain, unless it
    is running), it resolved, or its newest notification."""

    group_hash: str
    route_path: str
    group_key: str
    notification_id: str
    steps: tuple[Step, ...]
    route_receivers: tuple[str, ...]
    quiet_schedule: str | None
    fired: bool  # an alert fired anew for the route's receivers
    resolved: bool  # the group has no firing alert left
    stale_copy: bool = (
        False  # a peer's late copy (pipeline/decisions.order_states): not the group's newest notification
    )


_json = msgspec.json.Encoder()


def _steps(text: str) -> tuple[Step, ...]:
    return msgspec.json.decode(text, type=tuple[Step, ...])


def _chain(row: object) -> Chain:
    m = row._mapping  # type: ignore[attr-defined]
    return Chain(
        group_hash=m["group_hash"],
        route_path=m["route_path"],
        group_key=m["group_key"],
        state=ChainState(m["state"]),
        armed_at=m["armed_at"],
        started_at=m["started_at"],
        step=m["step"],
        due_at=m["due_at"],
        steps=_steps(m["steps"]),
        route_receivers=tuple(msgspec.json.decode(m["route_receivers"])),
        quiet_schedule=m["quiet_schedule"],
        paged=tuple(msgspec.json.decode(m["paged"])),
        notification_id=m["notification_id"],
        ended=m["ended"],
        updated_at=m["updated_at"],
    )


def _row(c: Chain) -> dict[str, object]:
    return {
        "group_hash": c.group_hash,
        "route_path": c.route_path,
        "group_key": c.group_key,
        "state": c.state.value,
        "armed_at": c.armed_at,
        "started_at": c.started_at,
        "step": c.step,
        "due_at": c.due_at,
        "steps": _json.encode(c.steps).decode(),
        "route_receivers": _json.encode(c.route_receivers).decode(),
        "quiet_schedule": c.quiet_schedule,
        "paged": _json.encode(c.paged).decode(),
        "notification_id": c.notification_id,
        "ended": c.ended,
        "updated_at": c.updated_at,
    }


def follow(conn: Connection, arms: Sequence[Arm], now: float) -> None:
    """The intake's side, in its transaction: arm a chain for a group whose alert fired anew (a chain that runs
    keeps running; one that ended or closed starts again, keeping whom it paged), mark one whose group resolved,
    and keep every chain pointed at its group's newest notification (a peer's late copy is not that)."""
    if not arms:
        return
    keys = [(a.group_hash, a.route_path) for a in arms]
    found = {
        (c.group_hash, c.route_path): c
        for c in map(
            _chain,
            conn.execute(
                select(escalations).where(
                    escalations.c.group_hash.in_({k[0] for k in keys}),
                    escalations.c.route_path.in_({k[1] for k in keys}),
                )
            ),
        )
    }
    rows: dict[tuple[str, str], Chain] = {}
    for a in arms:
        key = (a.group_hash, a.route_path)
        chain = rows.get(key) or found.get(key)
        if a.resolved:
            if chain is not None and chain.state not in (ChainState.RESOLVED, ChainState.CLOSED):
                # a step overdue now never pages (the group is over): its due time stays, for the timeline to say
                overdue = chain.state is ChainState.RUNNING and chain.due_at is not None and chain.due_at <= now
                due_at = chain.due_at if overdue else None
                chain = msgspec.structs.replace(chain, state=ChainState.RESOLVED, due_at=due_at, ended="resolved")
        elif a.fired and (chain is None or chain.state not in (ChainState.ARMED, ChainState.RUNNING)):
            chain = Chain(
                group_hash=a.group_hash,
                route_path=a.route_path,
                group_key=a.group_key,
                state=ChainState.ARMED,
                armed_at=now,
                started_at=None,
                step=0,
                due_at=None,
                steps=a.steps,
                route_receivers=a.route_receivers,
                quiet_schedule=a.quiet_schedule,
                paged=chain.paged if chain is not None and chain.state is not ChainState.CLOSED else (),
                notification_id=a.notification_id,
                ended=None,
                updated_at=now,
            )
        if chain is not None:
            # a step's message shows the notification the chain points at: never a peer's late copy
            newest = chain.notification_id if a.stale_copy else a.notification_id
            rows[key] = msgspec.structs.replace(chain, notification_id=newest, updated_at=now)
    if not rows:
        return
    ins = dialect_insert(conn.dialect.name, escalations)
    names = [c.name for c in escalations.c if c.name not in ("group_hash", "route_path")]
    conn.execute(
        ins.on_conflict_do_update(
            index_elements=[escalations.c.group_hash, escalations.c.route_path],
            set_={n: getattr(ins.excluded, n) for n in names},
        ),
        [_row(c) for c in rows.values()],
    )


def to_act_on(conn: Connection, now: float) -> list[Chain]:
    """The chains the ticker acts on now: armed ones (has their first message gone?), running ones (acknowledged,
    silenced, or a step due), done ones (acknowledged or silenced after the last step: a page still on its way is
    taken back), resolved ones (paged receivers to tell). Locked for this transaction."""
    acting = [ChainState.ARMED, ChainState.RUNNING, ChainState.DONE, ChainState.RESOLVED]
    q = (
        select(escalations)
        .where(escalations.c.state.in_(acting))
        .order_by(escalations.c.armed_at)
        .with_for_update(skip_locked=True)
    )
    return [_chain(r) for r in conn.execute(q)]


def save(conn: Connection, chain: Chain) -> None:
    row = _row(chain)
    conn.execute(
        update(escalations)
        .where(escalations.c.group_hash == chain.group_hash, escalations.c.route_path == chain.route_path)
        .values({k: v for k, v in row.items() if k not in ("group_hash", "route_path")})
    )


def first_sent(conn: Connection, group_hash: str, receivers: Collection[str], since: float) -> float | None:
    """When the group's first alert message sent since `since` reached one of `receivers`. Counted by when it was
    sent, not made: a message that waited from before (in back-off, say) takes in the newer state, and it is the
    one that tells the receivers the group fires again."""
    q = select(func.min(deliveries.c.sent_at)).where(
        deliveries.c.group_hash == group_hash,
        deliveries.c.receiver.in_(list(receivers)),
        deliveries.c.kind == MessageKind.ALERT.value,
        deliveries.c.state == DeliveryState.SENT.value,
        deliveries.c.sent_at >= since,
        func.coalesce(deliveries.c.provider_ref, "") != TAKEN_BACK,
    )
    found = conn.execute(q).scalar()
    return float(found) if found is not None else None


def take_back_pages(conn: Connection, group_hash: str, now: float, why: str, *, timeline: bool) -> int:
    """Take back the group's pages that no provider has yet (an escalation step's messages, the ones with a note,
    still waiting: behind a rate limit, in back-off, or held by quiet hours), because `why` (the group was
    acknowledged or silenced). Each is closed as done without being sent (provider reference TAKEN_BACK) and, with
    `timeline`, gets a line in the group's timeline. A page a worker holds is on its way and is left to go.
    Returns how many were taken back."""
    rows = conn.execute(
        select(deliveries.c.id, deliveries.c.receiver, deliveries.c.group_key, deliveries.c.change).where(
            deliveries.c.group_hash == group_hash,
            deliveries.c.state == DeliveryState.PENDING.value,
            deliveries.c.kind == MessageKind.ALERT.value,
        )
    ).all()
    pages = [r for r in rows if ChangeRecord.decode(r.change).note]
    if not pages:
        return 0
    conn.execute(
        update(deliveries)
        .where(deliveries.c.id.in_([r.id for r in pages]), deliveries.c.state == DeliveryState.PENDING.value)
        .values(state=DeliveryState.SENT.value, sent_at=now, updated_at=now, provider_ref=TAKEN_BACK, parts_sent=0)
    )
    if timeline:
        record(
            conn,
            [
                TimelineEvent(
                    id=new_id(),
                    at=now,
                    group_hash=group_hash,
                    group_key=r.group_key,
                    kind=EventKind.ESCALATION,
                    subject=r.receiver,
                    outcome="taken_back",
                    text=f"page to {r.receiver} taken back before it went out: {why}",
                )
                for r in pages
            ],
        )
    return len(pages)


def last_word_taken_back(conn: Connection, group_hash: str, receivers: Collection[str]) -> set[str]:
    """Those of `receivers` whose newest closed message of the group is a page taken back: they were never told of
    this episode, so its resolve is not theirs to hear."""
    if not receivers:
        return set()
    q = (
        select(deliveries.c.receiver, deliveries.c.provider_ref)
        .where(
            deliveries.c.group_hash == group_hash,
            deliveries.c.receiver.in_(list(receivers)),
            deliveries.c.state == DeliveryState.SENT.value,
        )
        .order_by(deliveries.c.sent_at.desc())
    )
    newest: dict[str, str | None] = {}
    for receiver, ref in conn.execute(q):
        newest.setdefault(str(receiver), ref)
    return {r for r, ref in newest.items() if ref == TAKEN_BACK}


async def chains_of(conn: AsyncConnection, hashes: Collection[str]) -> dict[str, list[Chain]]:
    """The chains of these groups, for /status and the web view."""
    if not hashes:
        return {}
    out: dict[str, list[Chain]] = {}
    for r in await conn.execute(select(escalations).where(escalations.c.group_hash.in_(list(hashes)))):
        c = _chain(r)
        out.setdefault(c.group_hash, []).append(c)
    return out


async def running(conn: AsyncConnection) -> list[Chain]:
    q = select(escalations).where(escalations.c.state.in_([ChainState.ARMED, ChainState.RUNNING]))
    return [_chain(r) for r in await conn.execute(q)]


class OpenReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """The newest message of a group on an acknowledging target, when it is an emergency still to acknowledge."""

    target: str
    group_hash: str
    group_key: str
    ref: str
    sent_at: float


def open_receipts(conn: Connection, targets: Collection[str], prefix: str, since: float) -> list[OpenReceipt]:
    """Per (target, group) of `targets`, the newest message sent since `since` whose reference starts with `prefix`
    (an emergency's receipt), if its group is not acknowledged. A newer message without a receipt (the resolve, a
    lower severity) means the group's emergency is over."""
    if not targets:
        return []
    q = (
        select(
            deliveries.c.target,
            deliveries.c.group_hash,
            deliveries.c.group_key,
            deliveries.c.provider_ref,
            deliveries.c.sent_at,
        )
        .where(
            deliveries.c.target.in_(list(targets)),
            deliveries.c.state == DeliveryState.SENT.value,
            deliveries.c.kind == MessageKind.ALERT.value,
            deliveries.c.sent_at >= since,
            ~deliveries.c.group_hash.in_(select(group_acks.c.group_hash)),
        )
        .order_by(deliveries.c.sent_at)
    )
    newest: dict[tuple[str, str], OpenReceipt] = {}
    for target, gh, key, ref, sent_at in conn.execute(q):
        newest[(target, gh)] = OpenReceipt(
            target=target, group_hash=gh, group_key=key, ref=ref or "", sent_at=float(sent_at)
        )
    return [r for r in newest.values() if r.ref.startswith(prefix)]
