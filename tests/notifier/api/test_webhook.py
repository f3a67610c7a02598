"""The webhook intake: every captured payload stored and readable back, bad input answered exactly, duplicates
stored once, SQLite and PostgreSQL alike."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from sqlalchemy import select, update

from notifier.store.tables import deliveries, notifications
from tests.helpers import (
    console_settings,
    fixture_bytes,
    fixture_json,
    fixture_names,
    make_group,
    settings_from,
    wait_for,
)
from tests.notifier.harness import AUTH, count, post, running, stored_notification


@pytest.mark.parametrize("name", fixture_names())
async def test_captured_payload_is_stored_and_reads_back_field_for_field(store_url: str, name: str) -> None:
    async with running(console_settings(store_url)) as (client, rt):
        r = await post(client, fixture_bytes(name))
        assert r.status_code == 202, r.text
        body = r.json()
        expected = fixture_json(name)
        assert body["alerts"] == len(expected["alerts"])
        assert body["duplicate"] is False
        async with rt.store.begin() as conn:
            row = await stored_notification(conn, body["notification_id"])
        assert row is not None
        assert json.loads(row["payload"]) == expected
        assert row["group_key"] == expected["groupKey"]
        assert row["status"] == expected["status"]
        assert row["alert_count"] == len(expected["alerts"])


async def test_a_large_group_is_stored_compressed_and_still_delivered_whole(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 100-alert body (38 KiB) is kept packed, reads back byte for byte, and its message carries every alert."""
    sent = make_group(100, group_key='{}:{alertname="LargeDrawdown"}')
    raw = json.dumps(sent).encode()
    async with running(console_settings(store_url)) as (client, rt):
        r = await post(client, raw)
        assert r.status_code == 202, r.text
        nid = r.json()["notification_id"]
        async with rt.store.begin() as conn:
            text, packed = (
                await conn.execute(
                    select(notifications.c.payload, notifications.c.payload_packed).where(notifications.c.id == nid)
                )
            ).one()
            row = await stored_notification(conn, nid)
        assert text == ""
        assert packed is not None and len(packed) * 5 < len(raw)
        assert row is not None and "payload_packed" not in row
        assert row["payload"].encode() == raw

        async def delivered() -> bool:
            return await count(rt, deliveries, state="sent") == 1

        await wait_for(delivered)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    sent_lines = [x for x in lines if x.get("event") == "notification"]
    assert [x["alerts"] for x in sent_lines] == [100]


async def test_a_damaged_packed_body_dead_letters_its_own_message_only(store_url: str) -> None:
    settings = console_settings(store_url)
    groups = [make_group(100, group_key=f'{{}}:{{g="{i}"}}', name=f"Alert{i}") for i in range(2)]
    async with running(settings) as (client, rt):
        await rt.worker.stop()  # the messages wait in the outbox
        ids = [(await post(client, json.dumps(g))).json()["notification_id"] for g in groups]
        async with rt.store.begin() as conn:
            await conn.execute(
                update(notifications).where(notifications.c.id == ids[0]).values(payload_packed=b"not zlib at all")
            )
    async with running(settings) as (_client, rt):

        async def settled() -> bool:
            return await count(rt, deliveries, state="dead") + await count(rt, deliveries, state="sent") == 2

        await wait_for(settled)
        async with rt.store.begin() as conn:
            states = {
                nid: (state, error)
                for nid, state, error in await conn.execute(
                    select(deliveries.c.notification_id, deliveries.c.state, deliveries.c.last_error)
                )
            }
    assert states[ids[1]] == ("sent", None)
    assert states[ids[0]][0] == "dead"
    assert "cannot be read" in states[ids[0]][1]


async def test_unknown_fields_from_newer_senders_are_accepted(sqlite_url: str) -> None:
    p = fixture_json("01-critical-firing-two-alerts.json")
    p["notification_reason"] = "first notification"
    p["routeLabels"] = {"team": "trading"}
    p["alerts"][0]["somethingNew"] = {"x": 1}
    async with running(console_settings(sqlite_url)) as (client, _rt):
        r = await post(client, json.dumps(p))
        assert r.status_code == 202, r.text


def _broken(mutate: Any) -> str:
    p = fixture_json("01-critical-firing-two-alerts.json")
    mutate(p)
    return json.dumps(p)


BAD_INPUTS = [
    ("missing groupKey", _broken(lambda p: p.pop("groupKey")), "groupKey"),
    ("missing alerts", _broken(lambda p: p.pop("alerts")), "alerts"),
    ("empty alerts", _broken(lambda p: p.update(alerts=[])), "alerts"),
    ("alert without fingerprint", _broken(lambda p: p["alerts"][1].pop("fingerprint")), "alerts[1].fingerprint"),
    ("startsAt not a time", _broken(lambda p: p["alerts"][0].update(startsAt="yesterday")), "alerts[0].startsAt"),
    ("label value not a string", _broken(lambda p: p["alerts"][0]["labels"].update(bot=7)), "alerts[0].labels.bot"),
    ("status unknown", _broken(lambda p: p.update(status="burning")), "status"),
    ("truncatedAlerts negative", _broken(lambda p: p.update(truncatedAlerts=-1)), "truncatedAlerts"),
    ("version 3", _broken(lambda p: p.update(version="3")), "version"),
    ("version 3 and fields missing", json.dumps({"version": "3", "alerts": []}), "version"),
    ("version missing", _broken(lambda p: p.pop("version")), "version"),
    ("version as a number", _broken(lambda p: p.update(version=4)), "version"),
]


@pytest.mark.parametrize(("case", "body", "field"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_payload_is_400_naming_the_field(sqlite_url: str, case: str, body: str, field: str) -> None:
    async with running(console_settings(sqlite_url)) as (client, rt):
        r = await post(client, body)
        assert r.status_code == 400, r.text
        err = r.json()
        assert err["field"] == field, err
        assert err["error"]
        assert await count(rt) == 0


@pytest.mark.parametrize("body", [b"not json", b"", b"{", b"[1,2]", b"\xff\xfe", b"null"])
async def test_body_that_is_not_a_json_object_is_400(sqlite_url: str, body: bytes) -> None:
    async with running(console_settings(sqlite_url)) as (client, rt):
        r = await post(client, body)
        assert r.status_code == 400, r.text
        assert "error" in r.json()
        assert await count(rt) == 0


async def test_body_over_the_limit_is_413(sqlite_url: str) -> None:
    s = console_settings(sqlite_url, server={"max_body_bytes": 20_000, "auth": {"bearer_token": "s3cret"}})
    big = json.dumps(make_group(100))
    assert len(big) > 20_000
    async with running(s) as (client, rt):
        r = await post(client, big)
        assert r.status_code == 413, r.text
        assert "max_body_bytes" in r.json()["error"]

        # the same body without a Content-Length (chunked) is refused too
        async def chunks() -> Any:
            for i in range(0, len(big), 4096):
                yield big[i : i + 4096].encode()

        r = await client.post("/webhook/alertmanager", content=chunks(), headers=AUTH)
        assert r.status_code == 413, r.text
        assert await count(rt) == 0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"am:s3cret").decode()},
        {"Authorization": "s3cret"},
        {"Authorization": "Bearer "},
    ],
    ids=["none", "wrong-token", "basic-not-configured", "no-scheme", "empty-token"],
)
async def test_missing_or_wrong_credentials_are_401(sqlite_url: str, headers: dict[str, str]) -> None:
    async with running(console_settings(sqlite_url)) as (client, rt):
        r = await client.post(
            "/webhook/alertmanager", content=fixture_bytes("02-info-firing-unicode.json"), headers=headers
        )
        assert r.status_code == 401
        assert "Bearer" in r.headers["www-authenticate"]
        assert await count(rt) == 0
        r = await client.get("/api/v1/deliveries", headers=headers)
        assert r.status_code == 401


async def test_basic_auth(sqlite_url: str, tmp_path: Any) -> None:
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    s = settings_from(
        {
            "server": {"auth": {"basic_auth": {"username": "am", "password_file": str(pw)}}},
            "receivers": [{"name": "console", "log": [{}]}],
            "routes": {"receiver": "console"},
        },
        sqlite_url,
    )
    good = "Basic " + base64.b64encode(b"am:hunter2").decode()
    bad = "Basic " + base64.b64encode(b"am:hunter3").decode()
    async with running(s) as (client, _rt):
        body = fixture_bytes("02-info-firing-unicode.json")
        assert (
            await client.post("/webhook/alertmanager", content=body, headers={"Authorization": bad})
        ).status_code == 401
        assert (
            await client.post("/webhook/alertmanager", content=body, headers={"Authorization": "Basic !!"})
        ).status_code == 401
        assert (
            await client.post("/webhook/alertmanager", content=body, headers={"Authorization": good})
        ).status_code == 202


async def test_redelivery_is_stored_once_and_processed_once(store_url: str) -> None:
    body = fixture_bytes("01-critical-firing-two-alerts.json")
    async with running(console_settings(store_url)) as (client, rt):
        first = (await post(client, body)).json()
        # an HA peer sends the same notification, with its keys in another order
        again = json.dumps(json.loads(body), sort_keys=True, indent=1)
        second = (await post(client, again)).json()
        third = (await post(client, body)).json()
        assert first["duplicate"] is False
        assert second["duplicate"] is True and third["duplicate"] is True
        assert second["notification_id"] == first["notification_id"]
        assert await count(rt, notifications) == 1
        assert await count(rt, deliveries) == 1
        # a real change of the group (one alert resolves) is a new notification
        changed = (await post(client, fixture_bytes("03-critical-one-resolved-one-firing.json"))).json()
        assert changed["duplicate"] is False
        assert await count(rt, notifications) == 2


async def test_concurrent_copies_from_ha_peers_are_stored_once(store_url: str) -> None:
    import asyncio

    body = fixture_bytes("01-critical-firing-two-alerts.json")
    async with running(console_settings(store_url)) as (client, rt):
        results = await asyncio.gather(*(post(client, body) for _ in range(8)))
        assert all(r.status_code == 202 for r in results)
        assert sum(1 for r in results if not r.json()["duplicate"]) == 1
        assert len({r.json()["notification_id"] for r in results}) == 1
        assert await count(rt, notifications) == 1


async def test_redelivery_after_the_window_is_new(sqlite_url: str) -> None:
    from notifier.clock import FrozenClock

    clock = FrozenClock(1_800_000_000.0)
    s = console_settings(sqlite_url, dedup={"redelivery_window": "10m"})
    body = fixture_bytes("02-info-firing-unicode.json")
    async with running(s, clock=clock) as (client, rt):
        assert (await post(client, body)).json()["duplicate"] is False
        await clock.advance(9 * 60)
        assert (await post(client, body)).json()["duplicate"] is True
        await clock.advance(2 * 60)
        assert (await post(client, body)).json()["duplicate"] is False
        assert await count(rt, notifications) == 2


async def test_a_redelivery_is_recognised_after_a_restart_until_its_window_ends(store_url: str) -> None:
    """The process restarts between an HA peer's two copies: the second is still a duplicate. On SQLite the keys
    live in memory, rebuilt from the stored notifications at start (the intake_keys table stays empty there)."""
    from notifier.clock import FrozenClock
    from notifier.store.tables import intake_keys

    clock = FrozenClock(1_800_000_000.0)
    s = console_settings(store_url, dedup={"redelivery_window": "10m"})
    first, second = fixture_bytes("02-info-firing-unicode.json"), fixture_bytes("01-critical-firing-two-alerts.json")
    async with running(s, clock=clock) as (client, rt):
        nid = (await post(client, first)).json()["notification_id"]
        await clock.advance(6 * 60)
        later = (await post(client, second)).json()["notification_id"]
        assert await count(rt, intake_keys) == (0 if rt.store.is_sqlite else 2)
    await clock.advance(3 * 60)  # 9 minutes after the first, 3 after the second
    async with running(s, clock=clock) as (client, rt):
        again = (await post(client, first)).json()
        assert again["duplicate"] is True and again["notification_id"] == nid
        await clock.advance(2 * 60)  # the first's window is over, the second's is not
        assert (await post(client, first)).json()["duplicate"] is False
        again = (await post(client, second)).json()
        assert again["duplicate"] is True and again["notification_id"] == later
        assert await count(rt, notifications) == 3


async def test_a_copy_keyed_by_an_earlier_version_is_stored_but_not_sent_again(store_url: str) -> None:
    """The redelivery key's encoding changed once (MessagePack instead of JSON): a copy that arrives just after
    the upgrade does not match its first copy's older key. It is stored again, and the receiver's group state
    still holds it back as unchanged, so nobody gets the message twice."""
    from notifier.store.tables import intake_keys

    body = fixture_bytes("01-critical-firing-two-alerts.json")
    s = console_settings(store_url)
    async with running(s) as (client, rt):
        assert (await post(client, body)).json()["queued"] == 1
        async with rt.store.begin() as conn:  # what an earlier version wrote: a key of another form
            await conn.execute(update(notifications).values(redelivery_key="0" * 64))
            await conn.execute(update(intake_keys).values(key="0" * 64))
    async with running(s) as (client, rt):
        again = (await post(client, body)).json()
        assert again["duplicate"] is False
        assert again["queued"] == 0 and again["suppressed"] == {"unchanged": 1}
        assert await count(rt, deliveries) == 1


async def test_health_ready_and_metrics(sqlite_url: str) -> None:
    async with running(console_settings(sqlite_url)) as (client, _rt):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).status_code == 200
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await post(client, fixture_bytes("01-critical-firing-two-alerts.json"))
        await post(client, b"nope")
        text = (await client.get("/metrics")).text
        assert 'notifier_webhooks_received_total{outcome="accepted"} 1.0' in text
        assert 'notifier_webhooks_received_total{outcome="duplicate"} 1.0' in text
        assert 'notifier_webhooks_received_total{outcome="invalid"} 1.0' in text
        assert 'notifier_alerts_received_total{severity="critical",status="firing"} 2.0' in text
        assert "notifier_intake_duration_seconds_bucket" in text
        assert "_created" not in text


async def test_alert_metrics_count_each_severity_and_status(sqlite_url: str) -> None:
    # one group of uniform severity (counted the short way), one mixed (each alert on its own), both with resolved
    uniform = make_group(5, severity="critical", resolved={1, 3})
    mixed = make_group(6, group_key="mixed", resolved={0, 4})
    for i, sev in enumerate(["critical", "info", "INFO", "bogus", "", "warning"]):
        mixed["alerts"][i]["labels"]["severity"] = sev
    del mixed["alerts"][4]["labels"]["severity"]  # no label at all: warning
    async with running(console_settings(sqlite_url)) as (client, _rt):
        for body in (uniform, mixed):
            assert (await post(client, json.dumps(body))).status_code == 202
        text = (await client.get("/metrics")).text
    expected = {
        ("critical", "firing"): 3,
        ("critical", "resolved"): 2 + 1,
        ("info", "firing"): 2,  # "INFO" is info
        ("warning", "firing"): 2,  # an unknown and an empty severity count as warning
        ("warning", "resolved"): 1,  # the alert without a severity label
    }
    for (sev, st), n in expected.items():
        assert f'notifier_alerts_received_total{{severity="{sev}",status="{st}"}} {float(n)}' in text
    assert 'notifier_alerts_received_total{severity="info",status="resolved"} 0.0' in text


async def test_validate_only_endpoint_stores_nothing(sqlite_url: str) -> None:
    async with running(console_settings(sqlite_url)) as (client, rt):
        r = await post(
            client, fixture_bytes("01-critical-firing-two-alerts.json"), path="/webhook/alertmanager/validate"
        )
        assert r.status_code == 200
        assert r.json() == {"status": "valid", "alerts": 2, "receivers": ["console"]}
        assert await count(rt) == 0


async def test_refused_webhooks_are_logged_with_status_reason_and_peer_without_flooding(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from notifier.clock import FrozenClock

    clock = FrozenClock(1795668000.0)
    caplog.set_level(logging.WARNING, logger="notifier.api")
    async with running(console_settings(sqlite_url), clock=clock) as (client, _rt):
        assert (await post(client, "{}", headers={"Authorization": "Bearer wrong"})).status_code == 401
        body = fixture_json("01-critical-firing-two-alerts.json")
        body["alerts"][0]["labels"]["severity"] = 3
        assert (await post(client, json.dumps(body))).status_code == 400
        lines = [r.getMessage() for r in caplog.records if r.name == "notifier.api"]
        assert lines[0] == "webhook refused with 401 from 127.0.0.1: missing or wrong credentials"
        assert lines[1].startswith("webhook refused with 400 from 127.0.0.1: Expected `str`, got `int`")
        assert lines[1].endswith("(alerts[0].labels.severity)")
        for _ in range(30):  # a flood: ten lines a minute, the rest counted
            await post(client, "{}", headers={"Authorization": "Bearer wrong"})
        assert len([r for r in caplog.records if r.name == "notifier.api"]) == 10
        await clock.advance(61)
        await post(client, "{}", headers={"Authorization": "Bearer wrong"})
        lines = [r.getMessage() for r in caplog.records if r.name == "notifier.api"]
        assert lines[10] == "22 more refused webhooks in the last minute were not logged"
        assert lines[11].startswith("webhook refused with 401")
        metrics = (await client.get("/metrics")).text
        assert 'notifier_webhooks_received_total{outcome="unauthorized"} 32.0' in metrics
