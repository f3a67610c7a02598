"""The notifier as a real process: what a 202 promised survives `kill -9`, and SIGTERM is a clean stop."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import TOKEN, ServerProcess, fixture_bytes, free_port, make_group

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def write_config(tmp_path: Path, url: str, port: int) -> Path:
    cfg = tmp_path / "notifier.yml"
    cfg.write_text(
        f"server: {{listen: '127.0.0.1:{port}', auth: {{bearer_token: {TOKEN}}}, shutdown_timeout: 10s}}\n"
        f"storage: {{url: '{url}'}}\n"
        "delivery: {poll_interval: 100ms}\n"
        "receivers: [{name: console, log: [{}]}]\nroutes: {receiver: console}\n"
    )
    return cfg


@pytest.mark.slow
def test_kill_9_right_after_202_loses_nothing(tmp_path: Path, store_url: str) -> None:
    port = free_port()
    server = ServerProcess(write_config(tmp_path, store_url, port), port).start()
    try:
        ids = []
        for i in range(20):
            body = json.dumps(make_group(3, group_key=f'{{}}:{{g="{i}"}}'))
            r = httpx.post(f"{server.url}/webhook/alertmanager", content=body, headers=HEADERS)
            assert r.status_code == 202
            ids.append(r.json()["notification_id"])
        server.kill9()  # no shutdown, no flush: only what was committed before each 202 exists
        server = ServerProcess(server.config, port).start()
        for nid, i in zip(ids, range(20), strict=True):
            body = json.dumps(make_group(3, group_key=f'{{}}:{{g="{i}"}}'))
            r = httpx.post(f"{server.url}/webhook/alertmanager", content=body, headers=HEADERS)
            # the same notification again is recognised: it was stored before the kill
            assert r.json() == {**r.json(), "duplicate": True, "notification_id": nid}
        # and every one of them is delivered by the restarted process
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = httpx.get(f"{server.url}/api/v1/deliveries?state=sent&limit=1000", headers=HEADERS)
            if len(r.json()["deliveries"]) == 20:
                break
            time.sleep(0.2)
        assert {d["notification_id"] for d in r.json()["deliveries"]} == set(ids)
    finally:
        server.stop()


def test_a_second_server_on_the_same_sqlite_store_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    """On SQLite one process serves a store (its redelivery keys and rate limits live in that process): a second
    `notifier serve` on the same file exits at once with a reason, and the first goes on serving."""
    port = free_port()
    server = ServerProcess(write_config(tmp_path, sqlite_url, port), port).start()
    try:
        other = tmp_path / "other"
        other.mkdir()
        cfg = write_config(other, sqlite_url, free_port())
        second = subprocess.run(
            [sys.executable, "-m", "notifier", "serve", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1, second.stderr
        assert f"is served by notifier pid {server.proc.pid if server.proc else '?'} already" in second.stderr
        assert "use PostgreSQL to run replicas" in second.stderr
        r = httpx.post(
            f"{server.url}/webhook/alertmanager",
            content=fixture_bytes("01-critical-firing-two-alerts.json"),
            headers=HEADERS,
        )
        assert r.status_code == 202
    finally:
        server.stop()
    # once it has stopped, the store can be served again
    ServerProcess(write_config(tmp_path, sqlite_url, port), port).start().stop()


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_0(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    server = ServerProcess(write_config(tmp_path, sqlite_url, port), port).start()
    results: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        i = 0
        with httpx.Client() as c:
            while not stop.is_set():
                i += 1
                body = json.dumps(make_group(50, group_key=f'{{}}:{{t="{threading.get_ident()}-{i}"}}'))
                try:
                    results.append(
                        c.post(
                            f"{server.url}/webhook/alertmanager", content=body, headers=HEADERS, timeout=10
                        ).status_code
                    )
                except httpx.TransportError:
                    results.append(-1)  # refused after the listener closed: Alertmanager retries these
                    return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    code = server.terminate()
    stop.set()
    for t in threads:
        t.join(10)
    assert code == 0, server.log.read_text()[-3000:]
    assert results.count(202) > 10
    # every request the server took was answered: 202 or (while closing) a clean 503; never a dropped 500
    assert all(r in (202, 503, -1) for r in results), results
    log = server.log.read_text()
    assert "notifier stopped" in log
    assert "Traceback" not in log


def test_secrets_never_reach_the_log(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    cfg = tmp_path / "notifier.yml"
    tg_token = "777:NEVER-LOG-THIS"
    cfg.write_text(
        f"server: {{listen: '127.0.0.1:{port}', auth: {{bearer_token: {TOKEN}}}}}\n"
        f"storage: {{url: '{sqlite_url}'}}\n"
        "delivery: {poll_interval: 100ms, max_attempts: 2, backoff_initial: 100ms}\n"
        f"receivers: [{{name: tg, telegram: [{{bot_token: '{tg_token}', chat_id: 42, "
        "api_url: 'http://127.0.0.1:9'}]}]\nroutes: {receiver: tg}\n"
    )
    server = ServerProcess(cfg, port, env={"NOTIFIER_LOG_LEVEL": "debug"}).start()
    try:
        r = httpx.post(
            f"{server.url}/webhook/alertmanager",
            content=fixture_bytes("01-critical-firing-two-alerts.json"),
            headers=HEADERS,
        )
        assert r.status_code == 202
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            dead = httpx.get(f"{server.url}/api/v1/deliveries?state=dead", headers=HEADERS).json()["deliveries"]
            if dead:
                break
            time.sleep(0.2)
        assert dead and "unreachable" in dead[0]["last_error"]
        assert tg_token not in json.dumps(dead)
    finally:
        server.stop()
    log = server.log.read_text()
    assert "is dead" in log
    assert tg_token not in log and "NEVER-LOG-THIS" not in log
    assert TOKEN not in log
