"""The value types of the configuration, shared by the settings and by each channel's target settings: secrets
that never show themselves, Prometheus-style durations, the strict struct base. A leaf module: it imports nothing
of the notifier, so that every module that reads configuration can import it."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec

# what a message shows at most, and the infrastructure labels it hides, unless a receiver says otherwise
DEFAULT_MAX_ALERTS = 100
DEFAULT_MAX_PARTS = 10
DEFAULT_HIDDEN_LABELS = ("instance", "job", "cluster", "monitor", "prometheus", "replica")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class Secret(str):
    """A string that never shows itself in a repr, so secrets cannot reach a log through a settings dump."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret('***')"


class Duration(float):
    """Seconds, written in the config as Prometheus-style durations: 30s, 10m, 1h30m, 24h, 0."""

    __slots__ = ()


def parse_duration(text: str | float | int) -> Duration:
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return Duration(text)
    s = str(text).strip()
    if s == "0":
        return Duration(0.0)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {s!r}; use forms like 30s, 10m, 1h30m, 24h")
    return Duration(total)


def read_secret_file(path: str, key: str) -> Secret:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    if not value:
        raise ValueError(f"{key}: {path} is empty")
    return Secret(value)


def secret(value: str | None, file: str | None, key: str, *, required: bool) -> Secret | None:
    """Resolve `key` / `key_file`: exactly one of them, the file's content stripped of surrounding white space.
    A key that is given but blank (often an unset ${VAR}) is refused: it must not quietly turn a check off."""
    if value is not None and not value.strip():
        raise ValueError(f"{key}: is empty (an unset variable?); give a value, or remove the key")
    if file is not None and not file.strip():
        raise ValueError(f"{key}_file: is empty; give a path, or remove the key")
    if value and file:
        raise ValueError(f"{key}: give either {key} or {key}_file, not both")
    if file:
        return read_secret_file(file, f"{key}_file")
    if value:
        return Secret(value)
    if required:
        raise ValueError(f"{key}: required (or {key}_file)")
    return None


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every settings struct: unknown keys are refused, so a typo never silently turns a feature off."""


WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def parse_weekdays(text: str) -> set[int]:
    """'monday:friday' -> {0..4}; 'sunday' -> {6}; 'saturday:monday' wraps around the week."""
    parts = [p.strip().lower() for p in text.split(":")]
    if len(parts) > 2 or any(p not in WEEKDAYS for p in parts):
        raise ValueError(f"expected a weekday or a range such as monday:friday, got {text!r}")
    a = WEEKDAYS.index(parts[0])
    b = WEEKDAYS.index(parts[-1])
    days = {a}
    while a != b:
        a = (a + 1) % 7
        days.add(a)
    return days


class BasicAuthSettings(Strict, kw_only=True):
    """A user name and a password (or password_file): the notifier's own auth, or Alertmanager's."""

    username: str
    password: str | None = None
    password_file: str | None = None

    def __post_init__(self) -> None:
        self.password = secret(self.password, self.password_file, "password", required=True)
