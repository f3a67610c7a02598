"""A Watchdog notification is proof of life, not an alert: which sources (each label set of the Watchdog alert, e.g.
each Prometheus replica) it proves alive. Pure."""

from __future__ import annotations

import hashlib

import msgspec

from notifier.alertmanager import WebhookPayload
from notifier.store.watchdogs import Sighting

NAME_LABELS = ("prometheus", "prometheus_replica", "replica", "instance", "cluster", "job")


def source_name(labels: dict[str, str]) -> str:
    """How a message names a source: its Prometheus or replica label, else its labels."""
    for key in NAME_LABELS:
        if labels.get(key):
            return labels[key]
    rest = {k: v for k, v in sorted(labels.items()) if k not in ("alertname", "severity")}
    return ",".join(f"{k}={v}" for k, v in rest.items()) or "Prometheus"


def sightings(payload: WebhookPayload, alertname: str, now: float) -> list[Sighting] | None:
    """The sources a Watchdog notification proves alive (its firing alerts), or None when it is not the Watchdog."""
    names = {a.labels.get("alertname") for a in payload.alerts}
    if names != {alertname}:
        return None
    found = []
    for a in payload.alerts:
        if a.status != "firing":
            continue
        labels = dict(a.labels)
        source = hashlib.sha256(msgspec.json.encode(sorted(labels.items()))).hexdigest()
        found.append(Sighting(source=source, name=source_name(labels), labels=labels, at=now))
    return found
