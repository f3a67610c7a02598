"""A crash at every step of a message's life, on both stores: `notifier serve` is killed with SIGKILL at that exact
moment (a failpoint, notifier/failpoints.py, or a kill from outside while the provider holds the request), started
again, and must start, deliver every change, and send nothing twice but the message that was on the wire.

Steps: stored and not yet answered; leased to the worker; on the wire; accepted by the provider but not yet marked
sent; a newer state waiting behind a message being sent; a state coalescing into that waiting message; folded into
a storm summary; a digest queued; an edit of a sent message in flight; a press from the chat carried out and not
yet answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from tests.fakes.push import FakeNtfy, Threaded
from tests.fakes.smtp import SMTPServer
from tests.fakes.telegram import FakeTelegram, ThreadedFake, check_html
from tests.helpers import TOKEN, fixture_bytes, free_port, make_group

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
CHAT = -1001234567890
FIRING, PARTLY, RESOLVED = (
    "01-critical-firing-two-alerts.json",
    "03-critical-one-resolved-one-firing.json",
    "04-critical-all-resolved.json",
)


class Notifier:
    """`notifier serve` as a process that may be killed at a failpoint, and started again on the same store."""

    def __init__(self, tmp_path: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "notifier.yml"
        config = {**config, "server": {"listen": f"127.0.0.1:{self.port}", "auth": {"bearer_token": TOKEN}}}
        self.config.write_text(json.dumps(config))
        self.log = tmp_path / "notifier.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, failpoint: str = "", *, ready: bool = True) -> Notifier:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFIER_FAILPOINTS": failpoint}
        with self.log.open("ab") as out:
            out.write(f"\n--- start (failpoint {failpoint or 'none'}) ---\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "notifier", "serve", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=str(self.config.parent),
            )
        if ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the notifier exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the notifier did not become ready:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def killed(self, timeout: float = 30.0) -> None:
        """Wait for the failpoint to kill the process."""
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the failpoint was never reached:\n{self.tail()}") from None
        assert code == -9, f"exited with {code}, not killed:\n{self.tail()}"

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def post(self, body: bytes | str) -> dict[str, Any] | None:
        """Post a webhook; None when the process died before answering (Alertmanager would retry it)."""
        try:
            r = httpx.post(f"{self.url}/webhook/alertmanager", content=body, headers=HEADERS, timeout=10)
        except httpx.TransportError:
            return None
        assert r.status_code == 202, r.text
        result: dict[str, Any] = r.json()
        return result

    def settle(self, done: Callable[[], bool] = lambda: True, timeout: float = 30.0) -> None:
        """Wait until nothing waits in the outbox and `done()` holds. The outbox is read in one query: a message
        can move from sending back to pending (held by the rate limit) between two."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = httpx.get(f"{self.url}/api/v1/deliveries?limit=1000", headers=HEADERS).json()["deliveries"]
            waiting = [d for d in rows if d["state"] in ("pending", "sending")]
            if not waiting and done():
                return
            time.sleep(0.2)
        raise AssertionError(f"the outbox did not drain:\n{self.tail()}")


@pytest.fixture
def telegram() -> Iterator[ThreadedFake]:
    fake = ThreadedFake(FakeTelegram())
    yield fake
    fake.stop()


def tg_config(tg: FakeTelegram, store_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "storage": {"url": store_url},
        "delivery": {"poll_interval": "100ms", "backoff_initial": "200ms", "backoff_max": "1s", "lease": "30s"},
        "receivers": [{"name": "tg", "telegram": [{"bot_token": tg.token, "chat_id": CHAT, "api_url": tg.url}]}],
        "routes": {"receiver": "tg"},
        **extra,
    }


def headlines(tg: ThreadedFake) -> list[str]:
    return [t.split("\n")[0] for t in tg.texts()]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], Notifier]]:
    made: list[Notifier] = []

    def make(config: dict[str, Any]) -> Notifier:
        made.append(Notifier(tmp_path, config))
        return made[-1]

    yield make
    for n in made:
        n.stop()


CRITICAL, RESOLVED_LINE = "🔴 CRITICAL: CriticalDrawdown", "✅ RESOLVED: CriticalDrawdown"


def assert_fired_then_resolved(texts: list[str]) -> None:
    """Every change told, in order: the firing message (twice at most: it may have been on the wire at the kill),
    then the resolution; or, where the firing message was still held back (the provider's rate limit, which the
    replicas' shared store keeps across a restart) when the resolution came, one message that tells both."""
    told = [t.split("\n")[0] for t in texts]
    if told == [RESOLVED_LINE]:
        assert texts[0].split("\n")[1].startswith("2 new, 2 resolved"), texts
        return
    assert told in ([CRITICAL, RESOLVED_LINE], [CRITICAL, CRITICAL, RESOLVED_LINE]), texts


def test_killed_after_storing_before_answering(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    n: Notifier = node(tg_config(telegram.fake, store_url)).start("intake.committed")
    assert n.post(fixture_bytes(FIRING)) is None  # stored, but no answer: Alertmanager sends it again
    n.killed()
    n.start()
    again = n.post(fixture_bytes(FIRING))
    assert again is not None and again["duplicate"] is True  # it was stored before the kill
    n.settle(lambda: len(telegram.fake.sent) >= 1)
    assert headlines(telegram) == [CRITICAL]


def test_killed_with_the_message_leased_to_the_worker(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    n: Notifier = node(tg_config(telegram.fake, store_url)).start("worker.leased.alert")
    assert n.post(fixture_bytes(FIRING)) is not None
    n.killed()
    assert telegram.fake.sent == []
    n.start()
    n.settle(lambda: len(telegram.fake.sent) >= 1)
    assert headlines(telegram) == [CRITICAL]


def test_killed_while_the_provider_holds_the_request(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    telegram.fake.delay = 2.0
    n: Notifier = node(tg_config(telegram.fake, store_url)).start()
    n.post(fixture_bytes(FIRING))
    _wait(lambda: any(r["method"] == "sendMessage" for r in telegram.fake.requests))
    n.kill9()
    telegram.fake.delay = 0.0
    n.start()
    n.settle(lambda: len(telegram.fake.sent) >= 1)
    # at least once: the request on the wire may have been taken by the provider too
    assert headlines(telegram) in ([CRITICAL], [CRITICAL, CRITICAL])


def test_killed_after_the_provider_took_it_before_it_was_marked_sent(
    store_url: str, telegram: ThreadedFake, node: Any
) -> None:
    n: Notifier = node(tg_config(telegram.fake, store_url)).start("worker.sent.alert")
    n.post(fixture_bytes(FIRING))
    n.killed()
    assert headlines(telegram) == [CRITICAL]
    n.start()
    n.settle(lambda: len(telegram.fake.sent) >= 2)
    # the one duplicate at-least-once allows: the store never learnt that the provider had it
    assert headlines(telegram) == [CRITICAL, CRITICAL]


def test_killed_with_a_newer_state_waiting_behind_the_message_being_sent(
    store_url: str, telegram: ThreadedFake, node: Any
) -> None:
    """The defect: taking the leased message back met the one-pending-per-group rule and the start failed, every
    time, for good."""
    telegram.fake.delay = 2.0
    n: Notifier = node(tg_config(telegram.fake, store_url)).start()
    n.post(fixture_bytes(FIRING))
    _wait(lambda: any(r["method"] == "sendMessage" for r in telegram.fake.requests))
    waiting = n.post(fixture_bytes(RESOLVED))
    assert waiting is not None and waiting["queued"] == 1
    n.kill9()
    telegram.fake.delay = 0.0
    n.start()  # starts
    n.settle(lambda: RESOLVED_LINE in headlines(telegram))
    assert_fired_then_resolved(telegram.texts())
    assert "took back" in n.tail()


def test_killed_as_a_state_coalesces_into_the_waiting_message(
    store_url: str, telegram: ThreadedFake, node: Any
) -> None:
    telegram.fake.delay = 2.0
    n: Notifier = node(tg_config(telegram.fake, store_url)).start("intake.committed@3")
    n.post(fixture_bytes(FIRING))
    _wait(lambda: any(r["method"] == "sendMessage" for r in telegram.fake.requests))
    assert n.post(fixture_bytes(PARTLY)) is not None  # waits behind the firing message
    assert n.post(fixture_bytes(RESOLVED)) is None  # coalesced into it, committed, killed before the answer
    n.killed()
    telegram.fake.delay = 0.0
    n.start()
    retried = n.post(fixture_bytes(RESOLVED))  # Alertmanager's retry
    assert retried is not None and retried["duplicate"] is True
    n.settle(lambda: RESOLVED_LINE in headlines(telegram))
    assert_fired_then_resolved(telegram.texts())


def test_killed_right_after_groups_were_folded_into_a_storm_summary(
    store_url: str, telegram: ThreadedFake, node: Any
) -> None:
    n: Notifier = node(tg_config(telegram.fake, store_url, storm={"threshold": 1})).start("storm.folded")
    bodies = []
    for i in range(5):
        g = make_group(1, name=f"Drawdown{i}", group_key=f'{{}}:{{g="{i}"}}')
        g["alerts"][0]["fingerprint"] = f"{i:016x}"
        g["alerts"][0]["labels"]["bot"] = f"bot-{i}"
        bodies.append(json.dumps(g))
    for b in bodies:
        if n.post(b) is None:
            break
    n.killed()
    n.start()
    for b in bodies:  # what was not answered is sent again; the rest are duplicates
        n.post(b)
    # Groups that came after the kill may make a summary of their own, held for the storm window before it is
    # queued: an empty outbox alone does not mean all is told, so wait until every group was mentioned.
    n.settle(lambda: all(any(f"Drawdown{i} " in t for t in telegram.texts()) for i in range(5)), timeout=60)
    texts = telegram.texts()
    for i in range(5):  # every group told once, alone or in a summary
        assert sum(f"Drawdown{i} " in t for t in texts) == 1, (i, texts)
    assert any("AlertStorm" in t for t in texts)


def test_killed_with_a_digest_queued(store_url: str, node: Any, smtp: SMTPServer) -> None:
    config = {
        "storage": {"url": store_url},
        "delivery": {"poll_interval": "100ms"},
        "receivers": [
            {
                "name": "mail",
                "email": [
                    {"host": "127.0.0.1", "port": smtp.port, "tls": "none", "from": "a@example.com", "to": ["d@x.io"]}
                ],
                "digest": {"schedule": "every 1h", "send_empty": True},
            }
        ],
        "routes": {"receiver": "mail", "digest": True},
    }
    n: Notifier = node(config).start("digest.queued", ready=False)
    n.killed()  # the digest of the current hour is queued at start
    assert smtp.messages == []
    n.start()
    n.settle(lambda: len(smtp.messages) >= 1)
    time.sleep(0.5)
    assert len(smtp.messages) == 1  # the tick was taken once: no second digest for it
    assert "digest" in str(smtp.messages[0].message["Subject"]).lower()


def _killed_after_an_ack(failpoint: str, store_url: str, telegram: ThreadedFake, node: Any) -> tuple[Notifier, str]:
    """A notifier with chat actions, armed at `failpoint`: a critical group's message goes out, someone presses
    its Ack, and the failpoint kills the process. The notifier (to start again) and the Ack's callback data."""
    tg = telegram.fake
    config = tg_config(
        tg,
        store_url,
        alertmanager={"urls": ["http://127.0.0.1:9"]},
        actions={"allowed": {"telegram": [7001]}, "telegram": {"poll_timeout": "1s", "lease": "10s"}},
    )
    n: Notifier = node(config).start(failpoint)
    n.post(json.dumps(make_group(1, severity="critical", name="BotDown")))
    _wait(lambda: len(tg.sent) == 1)
    rows = (tg.sent[0].reply_markup or {}).get("inline_keyboard", [])
    ack = next(b["callback_data"] for row in rows for b in row if b["text"] == "Ack")
    asyncio.run_coroutine_threadsafe(_press(tg, ack), telegram.loop).result(5)
    n.killed()
    return n, ack


def test_killed_with_an_edit_in_flight(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    tg = telegram.fake
    n, _ = _killed_after_an_ack("worker.sent.edit", store_url, telegram, node)
    assert len(tg.edits) == 1  # the edit reached Telegram; the store did not learn it
    n.start()
    n.settle()
    # sent again after the restart: Telegram answers "not modified", which is the edit's success
    assert "acknowledged by" in check_html(tg.sent[0].text)
    assert len(tg.sent) == 1  # an edit, never a new message


def test_killed_right_after_a_press(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    """The Ack was stored, then the process died before it answered: the restarted notifier still shows it on the
    message, and a second press finds it done."""
    tg = telegram.fake
    n, ack = _killed_after_an_ack("action.done", store_url, telegram, node)
    assert tg.edits == []
    n.start()
    n.settle(lambda: "acknowledged by" in check_html(tg.sent[0].text))
    assert len(tg.sent) == 1  # an edit, never a new message
    asyncio.run_coroutine_threadsafe(_press(tg, ack), telegram.loop).result(5)
    _wait(lambda: any("Acknowledged already" in (a["text"] or "") for a in tg.callback_answers))


def test_killed_right_after_an_escalation_step_fired(store_url: str, telegram: ThreadedFake, node: Any) -> None:
    """The step was committed with its message, then the process died before the worker had it: after the restart
    the step is not fired again, its message goes out once, and the next step still fires, once."""
    ntfy = Threaded(FakeNtfy())
    try:
        receivers = [
            {
                "name": "tg",
                "telegram": [{"bot_token": telegram.fake.token, "chat_id": CHAT, "api_url": telegram.fake.url}],
            },
            {"name": "loud", "ntfy": [{"server": ntfy.fake.url, "topic": "trading-oncall", "token": ntfy.fake.token}]},
        ]
        steps = [{"after": "10s", "receivers": ["loud"]}, {"after": "20s", "receivers": ["loud"]}]
        config = tg_config(telegram.fake, store_url)
        config |= {"receivers": receivers, "routes": {"receiver": "tg", "escalation": steps}}
        n: Notifier = node(config).start("escalation.fired")
        assert n.post(fixture_bytes(FIRING)) is not None
        n.killed(timeout=40)  # step 1 fired, about 10 s after the first message
        published = cast(FakeNtfy, ntfy.fake).published
        assert published == []
        n.start()
        _wait(lambda: len(published) == 1, timeout=20)
        assert "escalated from tg" in published[0].message
        _wait(lambda: len(published) == 2, timeout=30)  # step 2, about 20 s after the first message
        time.sleep(2.5)
        assert len(published) == 2  # neither lost nor fired twice
        assert len(telegram.texts()) == 1
    finally:
        ntfy.stop()


async def _press(tg: FakeTelegram, data: str) -> None:
    tg.press(tg.sent[0], data, user_id=7001)


def _wait(cond: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.05)


def test_a_replica_takes_over_a_dead_replicas_messages_in_order(
    pg_url: str, telegram: ThreadedFake, tmp_path: Path
) -> None:
    """The same on the other path of taking back: a replica killed with a message on the wire and a newer state
    waiting behind it; another replica takes the lease over once it runs out and tells both, in order."""
    tg = telegram.fake
    config = tg_config(tg, pg_url)
    config["delivery"] = {**config["delivery"], "lease": "3s"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Notifier(tmp_path / "a", config), Notifier(tmp_path / "b", config)
    try:
        a.start()
        b.start()
        tg.delay = 1.5
        a.post(fixture_bytes(FIRING))
        _wait(lambda: any(r["method"] == "sendMessage" for r in tg.requests))
        assert a.post(fixture_bytes(RESOLVED)) is not None
        a.kill9()
        tg.delay = 0.0
        b.settle(lambda: RESOLVED_LINE in headlines(telegram), timeout=30)
        assert_fired_then_resolved(telegram.texts())
    finally:
        a.stop()
        b.stop()
