"""Alertmanager's webhook payload, version 4: msgspec structs (unknown fields accepted, known ones typed), its
validation with errors that name the field, the group it describes (`to_group`), and what the intake needs of it
(`summarize`). The API, the pipeline, the worker and the CLI read payloads through this module."""

from __future__ import annotations

import contextlib
import hashlib
import re
from array import array
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import accumulate
from operator import itemgetter
from typing import Annotated, Any, Literal

import msgspec

from notifier.domain import SEVERITY_RANK, ZERO_TIME_YEAR, Alert, AlertGroup, AlertStatus, AlertTimes, Severity

ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
_ZERO_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
_AT = re.compile(r"^(?P<msg>.*) - at `\$\.?(?P<path>[^`]*)`$", re.S)
# A time must say which instant it is: without an offset it would be read in the server's zone.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]
# PostgreSQL's text type cannot hold NUL; JSON can only carry it escaped. The raw body is searched first, so that the
# usual payload, which has none, costs one scan of its bytes and no walk over its strings.
_NUL_ESCAPE = re.compile(rb"\\u0000")
# The payload is four levels deep; anything much deeper is hostile, and the decoder would run out of stack on it.
MAX_DEPTH = 64
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


class WebhookAlert(msgspec.Struct):
    """One alert of the group."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    startsAt: Instant
    endsAt: Instant
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
        with contextlib.suppress(msgspec.MsgspecError, RecursionError):  # a wrong version explains every mismatch
            _check_version(_version_decoder.decode(body).version)
        m = _AT.match(str(exc))
        msg, path = (m.group("msg"), m.group("path")) if m else (str(exc), "")
        path = path.lstrip(".")
        msg = msg.replace("Object missing required field", "missing required field")
        msg = msg.replace("Expected `datetime` with a timezone component", "expected a time with a UTC offset")
        if "[...]" in path:
            path = _name_dict_key(body, path).replace("[...]", "")
        missing = re.match(r"missing required field `([^`]+)`", msg)
        if missing:  # msgspec points at the object; the user wants the field
            path = f"{path}.{missing.group(1)}" if path else missing.group(1)
        raise PayloadError(msg, path) from None
    except msgspec.DecodeError as exc:
        raise PayloadError(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels", _too_deep(body)) from None
    _check_version(payload.version)
    if _deeper_than_allowed(body):  # under a key the payload does not know, which the decoder skipped
        raise PayloadError(f"nested deeper than {MAX_DEPTH} levels", _too_deep(body))
    _check_times(payload)
    if _NUL_ESCAPE.search(body):
        _check_no_nul(payload)
    return payload


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 opens, -1 (as a signed byte) closes


def _deeper_than_allowed(body: bytes) -> bool:
    """Whether the body's arrays and objects nest deeper than MAX_DEPTH anywhere. Its brackets are summed as +1/-1
    steps, in C; counted with those inside strings too the depth can only come out higher, so only a body that
    seems too deep that way has its strings taken out and is measured again."""
    if _depth(body) <= MAX_DEPTH:
        return False
    return _depth(_JSON_STRING.sub(b"", body)) > MAX_DEPTH


def _depth(text: bytes) -> int:
    return max(accumulate(array("b", text.translate(_BRACKET_STEPS, _NOT_BRACKETS))), default=0)


def _check_times(p: WebhookPayload) -> None:
    """Every time must name an instant between the years 1 and 9999 in UTC, as Python and both stores hold it.
    Only the edge years can leave that range with an offset, so only they are converted."""
    for i, a in enumerate(p.alerts):
        for name, t in (("startsAt", a.startsAt), ("endsAt", a.endsAt)):
            if t.year == 1 or t.year == 9999:
                try:
                    t.astimezone(UTC)
                except OverflowError:
                    raise PayloadError("the time is out of range in UTC", f"alerts[{i}].{name}") from None


def _nul_field(fields: dict[str, str], path: str) -> str | None:
    for k, v in fields.items():
        if "\x00" in k:
            return f"{path} (a key)"
        if "\x00" in v:
            return f"{path}.{k}"
    return None


def _check_no_nul(p: WebhookPayload) -> None:
    """Refuse what a store cannot hold, naming the first field that holds it."""
    found: str | None = None
    for name in ("version", "groupKey", "status", "receiver", "externalURL"):
        if "\x00" in getattr(p, name):
            found = name
            break
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        found = found or _nul_field(getattr(p, name), name)
    for i, a in enumerate(p.alerts):
        if found:
            break
        for name in ("fingerprint", "generatorURL"):
            if "\x00" in getattr(a, name):
                found = f"alerts[{i}].{name}"
        found = found or _nul_field(a.labels, f"alerts[{i}].labels")
        found = found or _nul_field(a.annotations, f"alerts[{i}].annotations")
    if found:
        raise PayloadError("must not contain NUL characters (\\u0000)", found)


def _too_deep(body: bytes) -> str:
    """Where the body nests deeper than MAX_DEPTH (the decoder that gave up could not say): a scan of its tokens,
    keeping one frame per open object (its current key) or array (its current index)."""
    frames: list[list[Any]] = []  # [is_object, key or index]
    for m in _JSON_TOKEN.finditer(body):
        tok = m.group()
        if tok in (b"{", b"["):
            if len(frames) >= MAX_DEPTH:
                break
            frames.append([tok == b"{", None if tok == b"{" else 0])
        elif tok in (b"}", b"]"):
            if frames:
                frames.pop()
        elif not frames:
            continue
        elif tok == b",":
            frames[-1][1] = None if frames[-1][0] else frames[-1][1] + 1
        elif tok.startswith(b'"') and frames[-1][0] and frames[-1][1] is None:
            try:
                frames[-1][1] = msgspec.json.decode(tok)
            except msgspec.MsgspecError:
                frames[-1][1] = "?"
    segments = [f"[{seg}]" if isinstance(seg, int) else f".{seg}" for _obj, seg in frames[:-1]]
    shown = "".join(segments[:6]) + ("…" if len(segments) > 6 else "")
    return shown.lstrip(".")


def _name_dict_key(body: bytes, path: str) -> str:
    """msgspec writes a map's key as `[...]`; find the key whose value is not a string (labels and annotations are
    the only maps in the payload, and their values must be strings)."""
    try:
        node: Any = msgspec.json.decode(body)
    except (msgspec.MsgspecError, RecursionError):
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


# MessagePack, not JSON: it writes a time as the instant it names, in a few bytes instead of a 20-character string,
# so that 04:05:13Z and 06:05:13+02:00 make one key
_key_encoder = msgspec.msgpack.Encoder()
_fingerprint = itemgetter(0)
_status = itemgetter(1)
_FIRING = AlertStatus.FIRING.value
_RESOLVED = AlertStatus.RESOLVED.value


class AlertSummary(msgspec.Struct, gc=False):
    """What the intake's decisions and metrics need of a payload's alerts (see `summarize`)."""

    key: str  # the redelivery key
    states: dict[str, str]  # fingerprint -> status, the group's state as this notification tells it
    times: dict[str, AlertTimes]  # fingerprint -> when it started and (resolved) ended: what orders its states
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
    times = {
        fp: AlertTimes(starts.timestamp(), ends.timestamp() if status == _RESOLVED else None)
        for fp, status, starts, ends in rows
    }
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
        return AlertSummary(key, states, times, counts, severity)
    for (name, status), n in Counter([(a.labels.get("severity", ""), a.status) for a in alerts]).items():
        pair = (Severity.parse(name), status)
        counts[pair] = counts.get(pair, 0) + n
    severity = min((sev for sev, _ in counts), key=SEVERITY_RANK.__getitem__)
    return AlertSummary(key, states, times, counts, severity)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def correct_alerts(alerts: list[dict[str, Any]], stale: Mapping[str, AlertTimes]) -> list[dict[str, Any]]:
    """A payload's alerts (as decoded JSON) with each stale copy replaced by the newer lifecycle known of it."""
    if not stale:
        return alerts
    out = []
    for a in alerts:
        known = stale.get(a.get("fingerprint", ""))
        if known is not None:
            a = {
                **a,
                "status": known.status,
                "startsAt": _iso(known.starts),
                "endsAt": _iso(known.ends) if known.ends is not None else ZERO_TIME,
            }
        out.append(a)
    return out


def corrected(payload: WebhookPayload, stale: Mapping[str, AlertTimes]) -> WebhookPayload:
    """The payload as the group really is: each stale alert shown in the newer state known of it."""
    if not stale:
        return payload
    alerts = []
    for a in payload.alerts:
        known = stale.get(a.fingerprint)
        if known is not None:
            a = msgspec.structs.replace(
                a,
                status=known.status,
                startsAt=datetime.fromtimestamp(known.starts, UTC),
                endsAt=datetime.fromtimestamp(known.ends, UTC) if known.ends is not None else _ZERO_INSTANT,
            )
        alerts.append(a)
    status = _FIRING if any(a.status == _FIRING for a in alerts) else _RESOLVED
    return msgspec.structs.replace(payload, alerts=alerts, status=status)
