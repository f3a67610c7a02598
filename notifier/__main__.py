"""The `notifier` command: serve, check-config, render, send-test, deliveries, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
from pathlib import Path
from typing import Any

from notifier.channels.registry import PLUGINS, renderer_for
from notifier.config import DEFAULT_CONFIG, default_config_path, load_settings
from notifier.errors import ConfigError, NotifierError
from notifier.settings import Settings
from notifier.templates.context import plural

EXIT_CONFIG = 2
EXIT_USAGE = 2  # as argparse exits for a bad command line
EXIT_FAILED = 1


def _setup_logging(level: str = "info") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # the SDKs log request URLs, and a Telegram URL carries the bot token: keep them at WARNING
    for noisy in ("httpx", "httpcore", "telegram", "slack_sdk", "aiosmtplib", "alembic", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _load(path: str | None) -> Settings:
    from notifier.redaction import protect

    settings = load_settings(path or default_config_path())
    protect(settings)  # nothing a command prints or logs may show one of its secrets
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from notifier.serve import serve

    settings = _load(args.config)
    _setup_logging(settings.server.log_level)
    return serve(settings)


def cmd_check_config(args: argparse.Namespace) -> int:
    from notifier.clock import SystemClock
    from notifier.domain import Severity
    from notifier.samples import test_message

    path = args.path or getattr(args, "config", None) or default_config_path()
    settings = _load(path)
    now = SystemClock().now()
    targets = 0
    for i, r in enumerate(settings.receivers):
        try:
            renderer = renderer_for(r)
            for key, kind, _t in r.targets():
                targets += 1
                for sev in Severity:
                    for resolved in (False, True):
                        msg = test_message(r.name, key, sev, now, resolved=resolved)
                        PLUGINS[kind].show(renderer, msg, now)
        except ValueError as exc:
            raise ConfigError(str(exc), path=f"receivers[{i}]", source=path) from None
        except Exception as exc:
            raise ConfigError(
                f"a template fails to render: {type(exc).__name__}: {exc}",
                path=f"receivers[{i}].templates",
                source=path,
            ) from None
    print(
        f"{path}: OK ({plural(len(settings.receivers), 'receiver')}, {plural(targets, 'target')}, "
        f"{plural(len(settings.quiet_hours), 'quiet-hours schedule')})"
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from notifier.store import Store

    settings = _load(args.config)
    _setup_logging(settings.server.log_level)

    async def run() -> None:
        store = Store(settings.storage)
        try:
            await store.migrate()
        finally:
            await store.dispose()

    asyncio.run(run())
    print("schema is up to date")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    import msgspec

    from notifier.alertmanager import PayloadError, decode_payload, to_group
    from notifier.clock import SystemClock
    from notifier.domain import Message

    settings = _load(args.config)
    try:
        receiver = settings.receiver(args.receiver)
    except KeyError:
        names = ", ".join(r.name for r in settings.receivers)
        print(f"no receiver {args.receiver!r} (receivers: {names})", file=sys.stderr)
        return EXIT_FAILED
    try:
        payload = decode_payload(Path(args.payload).read_bytes())
    except OSError as exc:
        print(f"{args.payload}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except PayloadError as exc:
        print(f"{args.payload}: {exc.field + ': ' if exc.field else ''}{exc.message}", file=sys.stderr)
        return EXIT_FAILED
    group = to_group(payload)
    now = SystemClock().now()
    renderer = renderer_for(receiver)
    out: list[dict[str, Any]] = []
    for key, kind, _t in receiver.targets():
        msg = Message(delivery_id="render", receiver=receiver.name, target=key, group=group)
        out.append({"target": key, "channel": kind, "messages": PLUGINS[kind].show(renderer, msg, now)})
    if args.json:
        raw = [{**entry, "messages": [m.raw for m in entry["messages"]]} for entry in out]
        print(msgspec.json.encode(raw).decode())
        return 0
    for entry in out:
        print(f"=== {entry['target']} ({entry['channel']})")
        for i, m in enumerate(entry["messages"], 1):
            if len(entry["messages"]) > 1:
                print(f"--- part {i}/{len(entry['messages'])}")
            print(m.text)
    return 0


def cmd_send_test(args: argparse.Namespace) -> int:
    from notifier.clock import SystemClock
    from notifier.domain import Severity
    from notifier.errors import DeliveryError
    from notifier.redaction import redact
    from notifier.runtime import build_channel
    from notifier.samples import test_message

    settings = _load(args.config)
    _setup_logging("warning")
    try:
        receiver = settings.receiver(args.receiver)
    except KeyError:
        names = ", ".join(r.name for r in settings.receivers)
        print(f"no receiver {args.receiver!r} (receivers: {names})", file=sys.stderr)
        return EXIT_FAILED
    clock = SystemClock()
    renderer = renderer_for(receiver)

    async def run() -> int:
        failures = 0
        for key, kind, target in receiver.targets():
            ch = build_channel(receiver, key, kind, target, renderer, clock)
            try:
                receipt = await ch.send(test_message(receiver.name, key, Severity(args.severity), clock.now()))
                print(f"{key}: sent ({kind} ref {receipt.ref})")
            except DeliveryError as exc:
                failures += 1
                print(f"{key}: FAILED: {redact(str(exc))}", file=sys.stderr)
            finally:
                await ch.aclose()
        if not receiver.targets():
            print(f"receiver {receiver.name} has no targets", file=sys.stderr)
            return EXIT_FAILED
        return EXIT_FAILED if failures else 0

    return asyncio.run(run())


def cmd_deliveries(args: argparse.Namespace) -> int:
    from notifier.clock import SystemClock
    from notifier.store import Store
    from notifier.store import repository as repo
    from notifier.views import deliveries_table

    settings = _load(args.config)

    async def run() -> int:
        store = Store(settings.storage)
        try:
            await store.migrate()
            if args.retry:
                now = SystemClock().now()
                before = await store.run_in_transaction(lambda conn: repo.retry_dead(conn, args.retry, now))
                if before != "dead":
                    print(f"{args.retry}: not retried ({before})", file=sys.stderr)
                    return EXIT_FAILED
                print(f"{args.retry}: pending again; a running notifier sends it")
                return 0
            async with store.begin(readonly=True) as conn:
                rows = await repo.list_deliveries(conn, args.state, args.limit)
        finally:
            await store.dispose()
        print(deliveries_table(rows, SystemClock().now(), args.state))
        return 0

    return asyncio.run(run())


def cmd_prune(args: argparse.Namespace) -> int:
    """Housekeeping now, once: what a running notifier does hourly, or with a shorter retention when the disk is
    full. Safe while the notifier runs: it deletes in short transactions, as the notifier itself does."""
    from prometheus_client import CollectorRegistry

    from notifier.clock import SystemClock
    from notifier.configtypes import parse_duration
    from notifier.metrics import NotifierMetrics
    from notifier.settings import MIN_RETENTION
    from notifier.store import Store
    from notifier.store.housekeeping import Housekeeper

    settings = _load(args.config)
    _setup_logging(settings.server.log_level)
    retention = settings.storage.retention
    if args.older_than is not None:
        try:
            retention = parse_duration(args.older_than)
        except ValueError as exc:
            print(f"--older-than: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        if retention < MIN_RETENTION:
            print("--older-than: expected at least 1d", file=sys.stderr)
            return EXIT_CONFIG
    if retention <= 0:
        print("storage.retention is 0 (keep everything) and no --older-than given: nothing to do")
        return 0

    async def run() -> dict[str, int]:
        store = Store(settings.storage)
        try:
            await store.migrate()
            keeper = Housekeeper(store, retention, SystemClock(), NotifierMetrics(CollectorRegistry()))
            return await keeper.prune()
        finally:
            await store.dispose()

    deleted = asyncio.run(run())
    for table, n in deleted.items():
        print(f"{table:14} {n} deleted")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """A group's timeline: every notification, decision, attempt and action, and why."""
    from notifier.clock import SystemClock
    from notifier.store import Store
    from notifier.store import timeline as tl
    from notifier.views import timeline_text

    settings = _load(args.config)
    if not args.group and not args.alertname:
        print("explain: give --group KEY or --alertname NAME", file=sys.stderr)
        return EXIT_USAGE
    since = SystemClock().now() - float(args.since)

    async def run() -> int:
        store = Store(settings.storage)
        try:
            await store.migrate()
            async with store.begin(readonly=True) as conn:
                if args.group:
                    key = args.group
                    hashes = [key] if re.fullmatch(r"[0-9a-f]{64}", key) else await tl.hashes_of(conn, key)
                else:
                    found = await tl.groups_like(conn, f'alertname="{args.alertname}"', since, limit=args.limit)
                    hashes = [h for h, _key, _at, _n in found]
                timelines = [(h, await tl.group_events(conn, h)) for h in hashes]
        finally:
            await store.dispose()
        if not timelines:
            print("no group found", file=sys.stderr)
            return EXIT_FAILED
        print("\n\n".join(timeline_text(h, events, args.timezone) for h, events in timelines))
        return 0

    return asyncio.run(run())


def cmd_hash_password(args: argparse.Namespace) -> int:
    """A web-view user's password_hash: the password is read from standard input (or asked for on a terminal)."""
    import getpass

    from notifier.ui.auth import hash_password

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        print("hash-password: at least 8 characters", file=sys.stderr)
        return EXIT_FAILED
    print(hash_password(password))
    return 0


def build_parser() -> argparse.ArgumentParser:
    config_help = f"the config file (default: $NOTIFIER_CONFIG, else {DEFAULT_CONFIG}; now {default_config_path()})"
    p = argparse.ArgumentParser(
        prog="notifier",
        description="TRADERAGENT's alert-routing notifier: Alertmanager's webhook target, delivering to Telegram, "
        "Slack, email and the log.",
        epilog="`notifier COMMAND --help` tells more of each command.",
    )
    p.add_argument("--config", "-c", help=config_help)
    p.add_argument("--debug", action="store_true", help="on a failure, print its traceback too")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, func: Any) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=summary, description=summary, formatter_class=_Help)
        s.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS, help=config_help)
        s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print a failure's traceback")
        s.set_defaults(func=func)
        return s

    command("serve", "run the notifier: the webhook, the delivery worker, digests and housekeeping", cmd_serve)

    s = command("check-config", "validate the config and render every template against sample alerts", cmd_check_config)
    s.add_argument("path", nargs="?", help="the config file (the same as --config)")

    command("migrate", "bring the store's schema up to date (serve does this at start)", cmd_migrate)

    s = command("render", "print what a receiver would send for a payload, sending nothing", cmd_render)
    s.add_argument("--receiver", required=True, help="a receiver's name from the config")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.add_argument("payload", help="an Alertmanager webhook JSON file")

    s = command("send-test", "send a real test message to every target of a receiver", cmd_send_test)
    s.add_argument("--receiver", required=True, help="a receiver's name from the config")
    s.add_argument("--severity", choices=["critical", "warning", "info"], default="warning", help="how it looks")

    s = command("deliveries", "list the outbox (newest first), or make a dead delivery pending again", cmd_deliveries)
    s.add_argument("--state", choices=["pending", "sending", "sent", "dead"], help="only these; all when not given")
    s.add_argument("--limit", type=_count, default=50, help="at most this many rows (1 to 1000)")
    s.add_argument("--retry", metavar="ID", help="make this dead delivery pending again (a running notifier sends it)")

    s = command(
        "explain", "why a group's messages went or did not: its timeline of decisions and attempts", cmd_explain
    )
    s.add_argument("--group", metavar="KEY", help="Alertmanager's group key, or the group's id from the API")
    s.add_argument("--alertname", metavar="NAME", help="every group of this alert name with events since --since")
    s.add_argument("--since", default="2h", type=_duration, help="with --alertname: how far back, e.g. 30m, 6h, 7d")
    s.add_argument("--limit", type=_count, default=10, help="with --alertname: at most this many groups")
    s.add_argument("--timezone", default="UTC", type=_zone, help="the times' zone, e.g. Europe/Berlin")

    command(
        "hash-password",
        "print a password hash for ui.users (reads the password from standard input)",
        cmd_hash_password,
    )

    s = command("prune", "delete what is older than storage.retention now (the hourly housekeeping, once)", cmd_prune)
    s.add_argument("--older-than", metavar="DURATION", help="instead of storage.retention, e.g. 7d (at least 1d)")
    return p


def _duration(text: str) -> float:
    from notifier.configtypes import parse_duration

    try:
        return float(parse_duration(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write it like 30m, 2h, 7d") from None


def _zone(text: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a time zone; write it like UTC or Europe/Berlin") from None
    return text


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 1 to 1000")
    return int(text)


class _Help(argparse.HelpFormatter):
    """Every option's default in its help line, where it has one (None and False are no default worth saying)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 failed (the store, the port, a delivery: the line says which), 2 a bad config or
    command line, 130 interrupted. A failure is one line on stderr; `--debug` adds the traceback."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        if args.debug:
            raise
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except NotifierError as exc:
        if args.debug:
            raise
        from notifier.redaction import redact

        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        from notifier.redaction import redact

        print(f"error: {type(exc).__name__}: {redact(str(exc))} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
