"""What keeps the notifier from starting is said in a line or two (what, where, what to do) with the documented
exit code, and no traceback unless --debug: a store it cannot reach, a port that is taken, a secret file that is
not there (relative paths are the config file's folder's), a bad duration or time zone on the command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port


def notifier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("NOTIFIER_")},
    )


def config(folder: Path, storage: str, port: int, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "notifier.yml"
    path.write_text(
        f'server: {{listen: "127.0.0.1:{port}"}}\nstorage: {{url: "{storage}"}}\n'
        f"receivers: [{{name: c, log: [{{}}]}}]\nroutes: {{receiver: c}}\n{extra}"
    )
    return path


def one_clean_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in r.stderr, r.stderr
    return lines[-1]


def test_a_store_it_cannot_reach(tmp_path: Path, pg_available: bool) -> None:
    refused = free_port()
    cases = [(f"postgresql://nobody@127.0.0.1:{refused}/nodb", "Connect call failed")]
    if pg_available:
        cases.append(("postgresql://nobody@127.0.0.1:5432/nodb", 'role "nobody" does not exist'))
    for url, why in cases:
        r = notifier("serve", "--config", str(config(tmp_path, url, free_port())), cwd=tmp_path)
        assert r.returncode == 1
        line = one_clean_line(r)
        assert line.startswith(f"error: the store at {url} is unavailable: ") and why in line
        assert "check storage.url" in line
        assert "notifier ready" not in r.stdout + r.stderr
        debug = notifier("serve", "--debug", "--config", str(config(tmp_path, url, free_port())), cwd=tmp_path)
        assert "Traceback" in debug.stderr


def test_a_port_that_is_taken_is_said_before_anything_says_ready(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        r = notifier("serve", "--config", str(config(tmp_path, f"sqlite:///{tmp_path}/n.db", port)), cwd=tmp_path)
    assert r.returncode == 1
    assert one_clean_line(r) == (
        f"error: cannot listen on 127.0.0.1:{port}: the address is in use (another notifier?); give another with "
        "server.listen (or NOTIFIER_LISTEN with the default config)"
    )
    assert "notifier ready" not in r.stderr


def test_relative_paths_are_the_config_files_folders(tmp_path: Path) -> None:
    folder = tmp_path / "srv" / "x"
    extra = "receivers: [{name: c, telegram: [{bot_token_file: telegram_token, chat_id: 42}]}]\n"
    path = (
        config(folder, "sqlite:///data/n.db", free_port())
        .read_text()
        .replace("receivers: [{name: c, log: [{}]}]\n", extra)
    )
    (folder / "notifier.yml").write_text(path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = notifier("check-config", str(folder / "notifier.yml"), cwd=elsewhere)
    assert r.returncode == 2
    assert one_clean_line(r) == (
        f"config error: {folder / 'notifier.yml'}: receivers[0].telegram[0].bot_token_file: cannot read "
        f"{folder / 'telegram_token'}: No such file or directory"
    )
    (folder / "telegram_token").write_text("123456:abc")
    ok = notifier("check-config", str(folder / "notifier.yml"), cwd=elsewhere)
    assert ok.returncode == 0 and ok.stdout.endswith("OK (1 receiver, 1 target, 0 quiet-hours schedules)\n")
    # the SQLite store too: beside the config, not in the working directory
    migrated = notifier("migrate", "--config", str(folder / "notifier.yml"), cwd=elsewhere)
    assert migrated.returncode == 0, migrated.stderr
    assert (folder / "data" / "n.db").exists() and not (elsewhere / "data").exists()


def test_a_bad_duration_time_zone_or_limit_is_a_usage_error(tmp_path: Path) -> None:
    cfg = str(config(tmp_path, f"sqlite:///{tmp_path}/n.db", free_port()))
    for args, said in (
        (["explain", "--alertname", "X", "--since", "2hours"], "'2hours' is not a duration; write it like 30m, 2h, 7d"),
        (["explain", "--alertname", "X", "--timezone", "Mars/Base"], "'Mars/Base' is not a time zone"),
        (["deliveries", "--limit", "0"], "'0': expected a whole number from 1 to 1000"),
        (["prune", "--older-than", "7days"], "--older-than: "),
    ):
        r = notifier(*args, "--config", cfg, cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert said in r.stderr and "Traceback" not in r.stderr, r.stderr
