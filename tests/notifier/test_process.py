"""The notifier as a real process: what a 202 promised survives `kill -9`, SIGTERM is a clean stop, and a webhook
whose sender stopped waiting for the answer is not stored."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.tcp import TcpProxy
from tests.helpers import TOKEN, ServerProcess, fixture_bytes, free_port, make_group, wait_for

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


@pytest.mark.slow
async def test_a_webhook_whose_sender_stopped_waiting_for_the_answer_is_not_stored(tmp_path: Path, pg_url: str) -> None:
    """Alertmanager gives up on a request at its flush's deadline and counts that notification as not delivered.
    Had the notifier stored it once the database answered again, the chat would show the group firing, and when it
    resolved with nothing else firing Alertmanager would tell nothing (the receiver, as far as it knows, never heard
    of it): firing for good (found by the soak). Not stored, Alertmanager's next flush tells the group as it is."""
    proxy = TcpProxy(5432)
    await proxy.start()
    port = free_port()
    config = write_config(tmp_path, pg_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), port)
    server = await asyncio.to_thread(ServerProcess(config, port).start)

    def group(status: str = "firing", starts: str = "2026-11-26T04:05:13Z") -> dict[str, Any]:
        key = '{}:{bot="bot-7"}'
        return make_group(1, group_key=key, severity="critical", name="CriticalDrawdown", status=status, starts=starts)

    refire = group(starts="2026-11-26T06:00:00Z")  # fires again after the resolve below
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=10) as client:

            async def sent() -> list[str]:
                r = await client.get("/api/v1/deliveries?state=sent&limit=100")
                return sorted(d["notification_id"] for d in r.json()["deliveries"])

            async def count_sent(n: int) -> bool:
                return len(await sent()) >= n

            async def metric(outcome: str) -> str:
                text = (await client.get("/metrics")).text
                return next((ln for ln in text.splitlines() if f'outcome="{outcome}"' in ln), "")

            for body in (group(), group(status="resolved")):
                assert (await client.post("/webhook/alertmanager", content=json.dumps(body))).status_code == 202
            await wait_for(lambda: count_sent(2), timeout=20)
            told = await sent()
            assert len(told) == 2

            proxy.stall()  # the database hangs: the next webhook waits for it
            with pytest.raises(httpx.TimeoutException):  # and its sender stops waiting, as at Alertmanager's deadline
                await client.post("/webhook/alertmanager", content=json.dumps(refire), timeout=1.5)
            proxy.resume()
            # another group's webhook: once it is answered, the one before it in the store's queue was settled
            other = make_group(1, group_key='{}:{bot="bot-8"}')
            r = await client.post("/webhook/alertmanager", content=json.dumps(other))
            assert r.status_code == 202
            await wait_for(lambda: count_sent(3), timeout=20)
            await asyncio.sleep(0.5)
            assert await sent() == sorted([*told, r.json()["notification_id"]])  # the abandoned one: nothing told
            assert (await metric("abandoned")).endswith(" 1.0")
            told = await sent()

            # Alertmanager's next flush: stored and told, not taken for a copy of the one abandoned
            r = await client.post("/webhook/alertmanager", content=json.dumps(refire))
            assert r.status_code == 202 and r.json()["duplicate"] is False
            await wait_for(lambda: count_sent(4), timeout=20)
            assert await sent() == sorted([*told, r.json()["notification_id"]])
    finally:
        await asyncio.to_thread(server.stop)
        await proxy.cut()
