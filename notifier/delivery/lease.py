"""A message's lease while it is sent. A worker holds each message it sends by a lease in the store; once the lease
runs out, another replica takes the message over and sends it (a replica that died mid-send is covered so). The
lease must therefore outlast the send: waiting for its turn behind a slow provider may have used most of it."""

from __future__ import annotations

import logging

from notifier.domain import Claim
from notifier.settings import DeliverySettings
from notifier.store import Store, leases

log = logging.getLogger("notifier.delivery")
MARGIN = 5.0  # seconds the lease outlasts the send at the least: the outcome is recorded after it


async def keep_for_the_send(store: Store, claim: Claim, owner: str, now: float, settings: DeliverySettings) -> bool:
    """Whether the message is still ours to send, with a lease that lasts the send (`send_timeout`): a shorter one
    is renewed. False when another replica took it over meanwhile: it is left to its new holder, which sends it."""
    d = claim.delivery
    needed = now + float(settings.send_timeout) + MARGIN
    if d.lease_until is not None and d.lease_until >= needed:
        return True
    until = max(needed, now + float(settings.lease))
    if not await store.run_in_transaction(lambda conn: leases.keep_delivery(conn, d.id, owner, until)):
        log.info("delivery %s: taken over by another replica once its lease ran out; that one sends it", d.id)
        return False
    return True
