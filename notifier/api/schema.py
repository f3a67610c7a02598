"""Alertmanager's webhook payload, version 4, as msgspec structs: unknown fields accepted, known ones typed."""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import Counter
from datetime import datetime
from operator import itemgetter
from typing import Annotated, Any, Literal

import msgspec

from notifier.domain import SEVERITY_RANK, ZERO_TIME_YEAR, Alert, AlertGroup, AlertStatus, Severity

_AT = re.compile(r"^(?P<msg>.*) - at `\$\.?(?P<path>[^`]*)`$", re.S)


class WebhookAlert(msgspec.Struct):
    """One alert of the group."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: datetime
    endsAt: datetime
    fingerprint: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    generatorURL: str = ""


class WebhookPayload(msgspec.Struct):
    """The whole POST body."""

    version: str
    groupKey: Annotated[str, msgspec.Meta(min_length=1)]
    status: Literal["firing", "resolved"]
    receiver: str
    alerts: Annotated[list[WebhookAlert], msgspec.Meta(min_length=1)]
    groupLabels: dict[str, str] = msgspec.field(default_factory=dict)
    commonLabels: dict[str, str] = msgspec.field(default_factory=dict)
    commonAnnotations: dict[str, str] = msgspec.field(default_factory=dict)
    externalURL: str = ""
    truncatedAlerts: Annotated[int, msgspec.Meta(ge=0)] = 0


class PayloadError(ValueError):
    """The body is not an acceptable webhook; `field` names the offending field ('' for the body as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field or None


_decoder = msgspec.json.Decoder(WebhookPayload)


class _VersionOnly(msgspec.Struct):
    version: object = None


_version_decoder = msgspec.json.Decoder(_VersionOnly)


def _check_version(version: object) -> None:
    if version != "4":
        shown = "missing" if version is None else repr(version)
        raise PayloadError(f'unsupported payload version ({shown}); this receiver accepts version "4"', "version")


def decode_payload(body: bytes) -> WebhookPayload:
    """Decode and validate a body; raise PayloadError naming the field."""
    if not body.strip():
        raise PayloadError("the body is empty; expected Alertmanager's webhook JSON")
    try:
        payload = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        with contextlib.suppress(msgspec.MsgspecError):  # a wrong version explains every other mismatch
            _check_version(_version_decoder.decode(body).version)
        m = _AT.match(str(exc))
        msg, path = (m.group("msg"), m.group("path")) if m else (str(exc), "")
        path = path.lstrip(".")
        msg = msg.replace("Object missing required field", "missing required field")
        if "[...]" in path:
            path = _name_dict_key(body, path)
        missing = re.match(r"missing required field `([^`]+)`", msg)
        if missing:  # msgspec points at the object; the user wants the field
            path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        raise PayloadError(msg, path) from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}") from None
    _check_version(payload.version)
    for name, value in (("groupKey", payload.groupKey), ("receiver", payload.receiver)):
        if "\x00" in value:
            raise PayloadError("must not contain NUL characters", name)
    return payload


def _name_dict_key(body: bytes, path: str) -> str:
    """msgspec writes a map's key as `[...]`; find the key whose value is not a string (labels and annotations are
    the only maps in the payload, and their values must be strings)."""
    try:
        node: Any = msgspec.json.decode(body)
    except msgspec.MsgspecError:
        return path
    out: list[str] = []
    for seg in re.findall(r"[^.\[\]]+|\[\d+\]|\[\.\.\.\]", path):
        if seg == "[...]":
            bad = next((k for k, v in node.items() if not isinstance(v, str)), None) if isinstance(node, dict) else None
            if bad is None:
                return path
            out.append(f".{bad}")
            node = node[bad]
        elif seg.startswith("["):
            node = node[int(seg[1:-1])]
            out.append(seg)
        else:
            node = node.get(seg) if isinstance(node, dict) else None
            out.append(f".{seg}" if out else seg)
        if node is None:
            return path
    return "".join(out)


def to_group(p: WebhookPayload) -> AlertGroup:
    alerts = tuple(
        Alert(
            status=AlertStatus(a.status),
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=None if a.endsAt.year == ZERO_TIME_YEAR else a.endsAt,
            generator_url=a.generatorURL,
            fingerprint=a.fingerprint,
        )
        for a in p.alerts
    )
    return AlertGroup(
        receiver=p.receiver,
        status=AlertStatus(p.status),
        group_key=p.groupKey,
        group_labels=p.groupLabels,
        common_labels=p.commonLabels,
        common_annotations=p.commonAnnotations,
        external_url=p.externalURL,
        alerts=alerts,
        truncated_alerts=p.truncatedAlerts,
    )


# MessagePack, not JSON: it writes a time as the instant it names, in a few bytes instead of a 20-character string
# (for 100 alerts, 5.4 KB to hash instead of 7.6 KB, and one key for 04:05:13Z and 06:05:13+02:00 alike)
_key_encoder = msgspec.msgpack.Encoder()
_fingerprint = itemgetter(0)
_status = itemgetter(1)
_FIRING = AlertStatus.FIRING.value
_RESOLVED = AlertStatus.RESOLVED.value


class AlertSummary(msgspec.Struct, gc=False):
    """What the intake's decisions and metrics need of a payload's alerts (see `summarize`)."""

    key: str  # the redelivery key
    states: dict[str, str]  # fingerprint -> status, the group's state as this notification tells it
    counts: dict[tuple[Severity, str], int]  # alerts per (severity, status): the metrics count them
    severity: Severity  # the group's severity: its most severe alert's, as AlertGroup.severity computes it


def summarize(p: WebhookPayload) -> AlertSummary:
    """The payload's redelivery key, alert states, counts and severity.

    The redelivery key is the identity of one notification: an HA peer's copy or a resend has the same key; any
    change gives another. It covers groupKey, receiver and the set of (fingerprint, status, startsAt, endsAt),
    hashed as one encoding of that set, sorted.

    A large group is summarised on every webhook, and walking its alerts is most of the cost, so they are walked
    twice: once for the four fields, from which the rest is done mostly in C, and once for the severity labels.
    The rows are sorted by fingerprint alone (unique within a group; a payload that repeats one has its rows
    sorted whole, as a set would have them). commonLabels is not trusted for the severity: a sender other than
    Alertmanager may send one that not every alert has."""
    alerts = p.alerts
    rows = [(a.fingerprint, a.status, a.startsAt, a.endsAt) for a in alerts]
    rows.sort(key=_fingerprint)
    states: dict[str, str] = {r[0]: r[1] for r in rows}
    if len(states) != len(rows):
        rows.sort()
    key = hashlib.sha256(_key_encoder.encode((p.groupKey, p.receiver, rows))).hexdigest()
    labels = {a.labels.get("severity", "") for a in alerts}
    counts: dict[tuple[Severity, str], int] = {}
    if len(labels) == 1:  # the usual group: one severity, its statuses counted in C
        severity = Severity.parse(labels.pop())
        firing = list(map(_status, rows)).count(_FIRING)
        if firing:
            counts[(severity, _FIRING)] = firing
        if firing < len(rows):
            counts[(severity, _RESOLVED)] = len(rows) - firing
        return AlertSummary(key, states, counts, severity)
    for (name, status), n in Counter([(a.labels.get("severity", ""), a.status) for a in alerts]).items():
        pair = (Severity.parse(name), status)
        counts[pair] = counts.get(pair, 0) + n
    severity = min((sev for sev, _ in counts), key=SEVERITY_RANK.__getitem__)
    return AlertSummary(key, states, counts, severity)
