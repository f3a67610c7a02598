"""Reading the configuration: one YAML file, ${ENV} substitution, only_if_set, *_file secrets and other paths
relative to the config file's folder, each channel's targets read with its plug-in's type, references between keys
checked. Every error names the file, the key path and the reason, e.g.
`notifier.yml: receivers[1].telegram[0].chat_id: expected an integer or @channelname`. The types are settings.py's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from notifier.channels.registry import PLUGINS
from notifier.configtypes import Duration, parse_duration
from notifier.errors import ConfigError
from notifier.matchers import parse_matcher
from notifier.settings import RouteQuietHours, RouteSettings, ScheduleSettings, Settings

DEFAULT_CONFIG = "notifier.yml"
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _substitute(node: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string scalar; `$$` stands for a literal `$`."""
    if isinstance(node, dict):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{path}[{i}]", env) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(
            f"environment variable {name} is not set (write ${{{name}:-default}} for a default)", path=path
        )

    return _ENV_REF.sub(repl, node)


def _only_if_set(names: Any, path: str, env: Mapping[str, str]) -> list[str]:
    """The variables of an `only_if_set` list that are unset or empty."""
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("expected a list of environment variable names", path=f"{path}.only_if_set")
    return [n for n in names if not env.get(n, "").strip()]


def _switch(node: Any, path: str, env: Mapping[str, str], notes: list[str]) -> Any:
    """Leave out every mapping whose `only_if_set` names a variable that is unset or empty (before ${VAR}
    substitution, so that what is left out needs none of its variables), and say so in `notes`. A receiver whose
    targets are all left out this way delivers to the log instead."""
    if isinstance(node, list):
        kept = []
        for i, item in enumerate(node):
            missing = _only_if_set(item["only_if_set"], f"{path}[{i}]", env) if _switchable(item) else []
            if missing:
                notes.append(f"{path}[{i}] is off: {', '.join(missing)} not set")
                continue
            kept.append(_switch(item, f"{path}[{i}]", env, notes))
        return kept
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        where = f"{path}.{key}" if path else str(key)
        if key == "only_if_set":
            continue
        missing = _only_if_set(value["only_if_set"], where, env) if _switchable(value) else []
        if missing:
            notes.append(f"{where} is off: {', '.join(missing)} not set")
            continue
        out[key] = _switch(value, where, env, notes)
    if path.startswith("receivers[") and path.endswith("]"):
        had = any(node.get(k) for k in PLUGINS)
        if had and not any(out.get(k) for k in PLUGINS):
            out["log"] = [{}]
            notes.append(f"receiver {node.get('name')!r} has no target on: its messages go to the log")
    return out


def _switchable(node: Any) -> bool:
    return isinstance(node, dict) and "only_if_set" in node


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Duration:
        return parse_duration(obj)
    raise NotImplementedError


_MSGSPEC_AT = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>[^`]*)`$", re.S)


def _split_validation_error(exc: msgspec.ValidationError) -> tuple[str, str]:
    """msgspec says `reason - at $.a[1].b`; we say `a[1].b: reason` (a field named in the reason joins the path)."""
    text = str(exc)
    m = _MSGSPEC_AT.match(text)
    path, msg = (m.group("path").lstrip("."), m.group("msg")) if m else ("", text)
    inner = re.match(r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\])?): (.*)$", msg, re.S)
    if inner:
        path = f"{path}.{inner.group(1)}" if path else inner.group(1)
        msg = inner.group(2)
    msg = msg.replace("Object contains unknown field", "unknown key").replace(
        "Object missing required field", "missing required key"
    )
    return path, msg


def _check_references(s: Settings) -> None:
    names: set[str] = set()
    template_keys = {t.key for p in PLUGINS.values() for t in p.templates if t.overridable}
    for i, r in enumerate(s.receivers):
        if r.name in names:
            raise ConfigError(f"receiver name {r.name!r} is used twice", path=f"receivers[{i}].name")
        names.add(r.name)
        for key in r.templates:
            if key not in template_keys:
                known = ", ".join(sorted(template_keys))
                raise ConfigError(f"unknown template (templates: {known})", path=f"receivers[{i}].templates.{key}")
        if r.digest is not None and not any(PLUGINS[c].capabilities.digests and t for c, t in r.channels.items()):
            raise ConfigError("a digest is an email; this receiver has no email target", path=f"receivers[{i}].digest")
        if r.actions is not None and s.actions is None:
            raise ConfigError("chat actions are off: give `actions:` at the top level", path=f"receivers[{i}].actions")
    if s.actions is not None:
        if s.alertmanager is None:
            raise ConfigError(
                "chat actions silence through Alertmanager: give `alertmanager: {urls: [...]}`", path="actions"
            )
        bots = {str(t.bot_token) for r in s.receivers for t in r.channels.get("telegram", [])}
        if s.actions.telegram.mode == "webhook" and len(bots) > 1:
            raise ConfigError(
                "one bot can take updates by webhook here; with several Telegram bots use polling",
                path="actions.telegram.mode",
            )
        if s.actions.allowed.empty() and not any(r.actions is not None for r in s.receivers):
            raise ConfigError("nobody may act: list Telegram user ids or Slack user ids", path="actions.allowed")

    def walk(route: RouteSettings, path: str, inherited: RouteQuietHours | None = None) -> None:
        quiet = route.quiet_hours or inherited
        for name in route.all_receivers():
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise ConfigError(f"unknown receiver {name!r} (receivers: {known})", path=f"{path}.receivers")
        for i, m in enumerate(route.matchers):
            try:
                parse_matcher(m)
            except ValueError as exc:
                raise ConfigError(str(exc), path=f"{path}.matchers[{i}]") from None
        wants_digest = route.digest or (route.quiet_hours is not None and route.quiet_hours.mode == "digest")
        for name in route.all_receivers() if wants_digest else []:
            if s.receiver(name).digest is None:
                raise ConfigError(
                    f"receiver {name!r} has no digest: give it `digest: {{schedule: ...}}`", path=f"{path}.receivers"
                )
        if route.quiet_hours and route.quiet_hours.schedule not in s.quiet_hours:
            known = ", ".join(sorted(s.quiet_hours)) or "none"
            raise ConfigError(
                f"unknown schedule {route.quiet_hours.schedule!r} (quiet_hours: {known})",
                path=f"{path}.quiet_hours.schedule",
            )
        for i, step in enumerate(route.escalation):
            for name in step.receivers:
                if name not in names:
                    known = ", ".join(sorted(names)) or "none"
                    raise ConfigError(
                        f"unknown receiver {name!r} (receivers: {known})", path=f"{path}.escalation[{i}].receivers"
                    )
            if step.quiet_hours == "respect" and quiet is None:
                raise ConfigError(
                    "this route has no quiet hours to respect: give the route `quiet_hours:`",
                    path=f"{path}.escalation[{i}].quiet_hours",
                )
        for i, child in enumerate(route.routes):
            walk(child, f"{path}.routes[{i}]", quiet)

    for i, r in enumerate(s.receivers):
        if r.message.chart and s.charts is None:
            raise ConfigError(
                "a chart needs Prometheus: give the top-level `charts: {prometheus_url: ...}`",
                path=f"receivers[{i}].message.chart",
            )
    if s.watchdog is not None:
        for name in s.watchdog.receivers:
            if name not in names:
                known = ", ".join(sorted(names)) or "none"
                raise ConfigError(f"unknown receiver {name!r} (receivers: {known})", path="watchdog.receivers")
    if not s.routes.all_receivers():
        raise ConfigError("the top-level route needs a default receiver", path="routes.receiver")
    walk(s.routes, "routes")


def _take_targets(data: dict[str, Any]) -> list[dict[str, tuple[Any, str]]]:
    """Each receiver's channel keys (`telegram: [...]`, ...), taken out of the data before it is converted: their
    types come from the channels' registry. Per receiver, in the registry's order: channel -> (raw list, key path)."""
    receivers = data.get("receivers")
    if not isinstance(receivers, list):
        return []
    out: list[dict[str, tuple[Any, str]]] = []
    for i, r in enumerate(receivers):
        taken: dict[str, tuple[Any, str]] = {}
        if isinstance(r, dict):
            if "channels" in r:
                raise ConfigError("unknown key `channels`", path=f"receivers[{i}]")
            for name in PLUGINS:
                if name in r:
                    taken[name] = (r.pop(name), f"receivers[{i}].{name}")
        out.append(taken)
    return out


def _convert(raw: Any, typ: Any, path: str) -> Any:
    """msgspec.convert, its errors named by the full key path."""
    try:
        return msgspec.convert([] if raw is None else raw, typ, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        inner, msg = _split_validation_error(exc)
        where = path + (inner if inner.startswith("[") else f".{inner}" if inner else "")
        raise ConfigError(msg, path=where) from None


def _check_named_maps(data: dict[str, Any]) -> None:
    """msgspec cannot name a map's key in its error path; validate named maps one entry at a time."""
    schedules = data.get("quiet_hours")
    if isinstance(schedules, dict):
        for name, value in schedules.items():
            try:
                msgspec.convert(value, ScheduleSettings, dec_hook=_dec_hook, strict=False)
            except msgspec.ValidationError as exc:
                path, msg = _split_validation_error(exc)
                raise ConfigError(msg, path=f"quiet_hours.{name}" + (f".{path}" if path else "")) from None


def load_settings_from_mapping(
    data: Any, *, source: str = "", env: Mapping[str, str] | None = None, base: Path | None = None
) -> Settings:
    """Validate an already-parsed config; the same checks as `load_settings`. With `base` (the config file's
    folder), relative paths in it are that folder's; without, the working directory's."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of keys", source=source)
    environ = os.environ if env is None else env
    notes: list[str] = []
    try:
        data = _switch(data, "", environ, notes)
        data = _substitute(data, "", environ)
        if base is not None:
            data = _anchor(data, base)
        _check_named_maps(data)
        targets = _take_targets(data)
        settings = msgspec.convert(data, Settings, dec_hook=_dec_hook, strict=False)
        for receiver, raw in zip(settings.receivers, targets, strict=True):
            receiver.channels = {
                name: _convert(items, list[PLUGINS[name].target], path)  # type: ignore[misc]  # a list of the type the registry names
                for name, (items, path) in raw.items()
            }
        _check_references(settings)
    except ConfigError as exc:
        raise ConfigError(exc.reason, path=exc.path, source=source) from None
    except msgspec.ValidationError as exc:
        path, msg = _split_validation_error(exc)
        raise ConfigError(msg, path=path, source=source) from None
    if settings.ui is not None and settings.ui.session_secret is not None:
        notes.append("ui.session_secret is no longer needed (sessions are kept in the store); it can go")
    settings.source = source
    settings.notes = notes
    return settings


def load_settings(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Settings:
    """Read, substitute and validate a config file; raise ConfigError naming the file, key path and reason."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the config: {exc.strerror or exc}", source=source) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}not valid YAML: {problem}", source=source) from None
    return load_settings_from_mapping(data, source=source, env=env, base=Path(path).resolve().parent)


_SQLITE_PREFIXES = ("sqlite:///", "sqlite+aiosqlite:///")


def _anchor(data: Any, base: Path, key: str = "") -> Any:
    """Relative paths of a config file are the config file's folder's, as Prometheus and Alertmanager read theirs:
    every `*_file` key, a template's `file`, and a SQLite database in `storage.url` (`sqlite:///data/n.db` is
    data/n.db beside the config; four slashes, `sqlite:////var/lib/n.db`, are an absolute path)."""
    if isinstance(data, dict):
        return {k: _anchor(v, base, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [_anchor(v, base, key) for v in data]
    if not isinstance(data, str) or not data:
        return data
    if (key.endswith("_file") or key == "file") and not os.path.isabs(data):
        return str(base / data)
    if key == "url":
        for prefix in _SQLITE_PREFIXES:
            rest = data[len(prefix) :]
            if data.startswith(prefix) and rest and not rest.startswith("/") and not rest.startswith(":memory:"):
                return prefix + str(base / rest)
    return data


def default_config_path() -> str:
    return os.environ.get("NOTIFIER_CONFIG", DEFAULT_CONFIG)
