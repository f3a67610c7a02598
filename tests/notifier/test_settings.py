"""Configuration: ${ENV} substitution, *_file secrets, and bad configs refused naming file, key path and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from notifier.config import load_settings
from notifier.configtypes import parse_duration
from notifier.errors import ConfigError
from tests.helpers import ROOT, production_example

GOOD = """
server:
  listen: 127.0.0.1:${PORT:-9999}
  auth: {bearer_token: "${TOKEN}"}
storage: {url: "sqlite:///${DATA}/n.db"}
receivers:
  - name: oncall
    telegram: [{bot_token_file: BOTFILE, chat_id: -1001234567890, message_thread_id: 7}]
    email: [{host: smtp.example.com, port: 587, tls: starttls, username: u, password: "p$$w", from: a@example.com,
             to: [b@example.com, c@example.com]}]
  - name: team
    slack: [{webhook_url: "${SLACK_URL}"}]
  - name: console
    log: [{}]
routes:
  receiver: console
  routes:
    - matchers: ['severity="critical"']
      receivers: [oncall]
    - matchers: ['severity=~"warning|info"']
      receivers: [team]
      quiet_hours: {schedule: night, mode: defer}
quiet_hours:
  night: {location: Europe/Berlin, weekdays: ['monday:sunday'], times: [{start: '22:00', end: '07:00'}]}
"""


def write(tmp_path: Path, text: str, bot_token: str = "123:abc") -> Path:
    (tmp_path / "bot").write_text(bot_token + "\n")
    p = tmp_path / "notifier.yml"
    p.write_text(text.replace("BOTFILE", str(tmp_path / "bot")))
    return p


def test_good_config_loads_with_substitution_and_secret_files(tmp_path: Path) -> None:
    env = {"TOKEN": "TOK-XYZZY", "DATA": "/var/x", "SLACK_URL": "https://hooks.slack.com/services/T/B/X"}
    s = load_settings(write(tmp_path, GOOD), env=env)
    assert s.server.port == 9999 and s.server.host == "127.0.0.1"
    assert s.server.auth.bearer_token == "TOK-XYZZY"
    assert s.storage.url == "sqlite:////var/x/n.db"
    tg = s.receiver("oncall").channels["telegram"][0]
    assert tg.bot_token == "123:abc"  # read from the file, newline stripped
    assert s.receiver("oncall").channels["email"][0].password == "p$w"  # $$ is a literal $
    assert float(s.dedup.redelivery_window) == 600 and float(s.delivery.max_age) == 86400
    # secrets never show in a repr, so a settings dump cannot leak them into a log
    dump = repr(s)
    for secret in ("TOK-XYZZY", "123:abc", "p$w", "hooks.slack.com"):
        assert secret not in dump, secret


BAD = [
    (
        "receivers:\n  - name: a\n    log: [{}]\n  - name: b\n    telegram: [{bot_token: x, chat_id: general}]\n"
        "routes: {receiver: a}\n",
        "receivers[1].telegram[0].chat_id",
        "expected an integer or @channelname",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: nobody}\n",
        "routes.receivers",
        "unknown receiver 'nobody'",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a, routes: [{matchers: ['severity=critical\"'], "
        "receivers: [a]}]}\n",
        "routes.routes[0].matchers[0]",
        "bad matcher",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\ndelivery: {max_age: 5 minutes}\n",
        "delivery.max_age",
        "invalid duration",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nserver: {listen: nowhere}\n",
        "server.listen",
        "expected HOST:PORT",
    ),
    (
        "receivers: [{name: a, log: [{}], telegrm: []}]\nroutes: {receiver: a}\n",
        "receivers[0]",
        "unknown key `telegrm`",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nstorage: {url: 'mysql://x'}\n",
        "storage.url",
        "expected sqlite",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n"
        "server: {auth: {bearer_token_file: /nonexistent/t}}\n",
        "server.auth.bearer_token_file",
        "cannot read /nonexistent/t",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nserver: {auth: {bearer_token: '${NOPE}'}}\n",
        "server.auth.bearer_token",
        "environment variable NOPE is not set",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a, quiet_hours: {schedule: nights}}\n",
        "routes.quiet_hours.schedule",
        "unknown schedule 'nights'",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nquiet_hours: {n: {location: Mars/Base}}\n",
        "quiet_hours.n.location",
        "unknown time zone 'Mars/Base'",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nquiet_hours: {n: {times: [{start: '25:00', "
        "end: '07:00'}]}}\n",
        "quiet_hours.n.times[0].start",
        "expected HH:MM",
    ),
    (
        "receivers: [{name: a, log: [{}]}, {name: a, log: [{}]}]\nroutes: {receiver: a}\n",
        "receivers[1].name",
        "used twice",
    ),
    (
        "receivers: [{name: a, email: [{host: h, from: me@x.org, to: [nobody]}]}]\nroutes: {receiver: a}\n",
        "receivers[0].email[0].to[0]",
        "not an email address",
    ),
    (
        "receivers: [{name: a, slack: [{bot_token: xoxb-1}]}]\nroutes: {receiver: a}\n",
        "receivers[0].slack[0].channel",
        "required with bot_token",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\ndelivery: {max_attempts: 0}\n",
        "delivery.max_attempts",
        ">= 1",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nquiet_hours: {n: {}}\n"
        "routes: {receiver: a, quiet_hours: {schedule: n, mode: digest}}\n",
        "routes.receivers",
        "receiver 'a' has no digest",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nserver: {auth: {bearer_token: '  '}}\n",
        "server.auth.bearer_token",
        "is empty",
    ),
    (
        "receivers: [{name: a, telegram: [{bot_token: '', chat_id: 1}]}]\nroutes: {receiver: a}\n",
        "receivers[0].telegram[0].bot_token",
        "is empty",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n"
        "server: {auth: {basic_auth: {username: u, password: ''}}}\n",
        "server.auth.basic_auth.password",
        "is empty",
    ),
    (
        "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\nserver: {listen: '0.0.0.0:9095'}\n",
        "server.auth",
        "reachable from other machines, and no auth is set",
    ),
    ("- just\n- a list\n", "", "top level must be a mapping"),
    (
        "actions: {allowed: {telegram: [7001]}}\nreceivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n",
        "actions",
        "chat actions silence through Alertmanager",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {telegram: ['@alice']}}\n",
        "actions.allowed.telegram[0]",
        "'@alice' is a username; give the person's numeric Telegram user id",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {telegram: [7001]}, telegram: "
        "{mode: webhook, webhook_url: 'https://n.example/telegram/updates', secret_token: a}}\n",
        "actions.telegram.secret_token",
        "16 to 256 characters",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {slack: [U01]}, slack: {signing_secret: x, "
        "response_urls: ['ftp://hooks.slack.com/']}}\n",
        "actions.slack.response_urls[0]",
        "expected a URL prefix",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {}\nreceivers: [{name: a, log: [{}]}]\n"
        "routes: {receiver: a}\n",
        "actions.allowed",
        "nobody may act",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {slack: [alice]}}\n",
        "actions.allowed.slack[0]",
        "expected a Slack user id",
    ),
    (
        "alertmanager: {urls: ['am:9093']}\n",
        "alertmanager.urls[0]",
        "expected an http:// or https:// URL",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {telegram: [1]}, telegram: {mode: webhook, "
        "webhook_url: 'https://n.example/telegram/updates'}}\n",
        "actions.telegram.secret_token",
        "required with mode webhook",
    ),
    (
        "alertmanager: {urls: ['http://am:9093']}\nactions: {allowed: {telegram: [1]}, silence_durations: [10s]}\n",
        "actions.silence_durations[0]",
        "expected from 1m to 366d",
    ),
    ("receivers: [{name: a, log: [{}]}\n", "", "not valid YAML"),
    (
        "receivers: [{name: a, message: {chart: true}, log: [{}]}]\nroutes: {receiver: a}\n",
        "receivers[0].message.chart",
        "a chart needs Prometheus",
    ),
    (
        "charts: {prometheus_url: prometheus:9090}\nreceivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n",
        "charts.prometheus_url",
        "expected an http:// or https:// URL",
    ),
    (
        "receivers: [{name: a, message: {timezone: Mars/Olympus}, log: [{}]}]\nroutes: {receiver: a}\n",
        "receivers[0].message.timezone",
        "unknown time zone",
    ),
]


@pytest.mark.parametrize(("text", "path", "reason"), BAD, ids=[b[1] or b[2] for b in BAD])
def test_bad_config_names_file_key_path_and_reason(tmp_path: Path, text: str, path: str, reason: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(p, env={})
    err = info.value
    assert err.source == str(p)
    assert err.path == path, str(err)
    assert reason in err.reason, str(err)
    assert str(err).startswith(f"{p}: ")


def test_secret_values_never_appear_in_config_errors(tmp_path: Path) -> None:
    text = "receivers: [{name: a, telegram: [{bot_token: 999:SUPERSECRET, chat_id: general}]}]\nroutes: {receiver: a}\n"
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), env={})
    assert "SUPERSECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h30m", 5400), ("24h", 86400), ("0", 0), ("1d", 86400), ("250ms", 0.25), (15, 15)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "notifier", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        env={**os.environ, **(env or {})},
    )


def test_check_config_cli_accepts_the_shipped_configs(tmp_path: Path) -> None:
    r = _cli("check-config", str(ROOT / "notifier.yml"))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout
    r = _cli("check-config", str(production_example(tmp_path)))
    assert r.returncode == 0, r.stderr


def test_check_config_cli_refuses_a_bad_file_with_exit_2(tmp_path: Path) -> None:
    p = write(tmp_path, BAD[0][0])
    r = _cli("check-config", str(p))
    assert r.returncode == 2
    assert f"{p}: receivers[1].telegram[0].chat_id: expected an integer or @channelname" in r.stderr
    r = _cli("check-config", str(tmp_path / "missing.yml"))
    assert r.returncode == 2 and "cannot read the config" in r.stderr


def test_check_config_cli_compiles_templates(tmp_path: Path) -> None:
    text = "receivers: [{name: a, log: [{}], templates: {log: {inline: '{{ title }'}}}]\nroutes: {receiver: a}\n"
    r = _cli("check-config", str(write(tmp_path, text)))
    assert r.returncode == 2
    assert "receivers[0]" in r.stderr and "templates.log" in r.stderr
    text = (
        "receivers: [{name: a, log: [{}], templates: {log: {inline: '{{ no_such_thing }}'}}}]\nroutes: {receiver: a}\n"
    )
    r = _cli("check-config", str(write(tmp_path, text)))
    assert r.returncode == 2
    assert "no_such_thing" in r.stderr


def test_an_open_port_without_auth_is_allowed_only_when_the_config_says_so(tmp_path: Path) -> None:
    text = "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n"
    open_port = "server: {listen: '0.0.0.0:9095', auth: {allow_unauthenticated: true}}\n"
    assert not load_settings(write(tmp_path, text + open_port), env={}).server.auth.enabled
    assert load_settings(write(tmp_path, text), env={}).server.listen == "127.0.0.1:9095"  # the default


def test_serve_refuses_the_production_example_with_an_empty_token(tmp_path: Path) -> None:
    r = _cli("serve", "--config", str(production_example(tmp_path, notifier_token="")))
    assert r.returncode == 2
    assert f"server.auth.bearer_token_file: {tmp_path}/secrets/notifier_token is empty" in r.stderr


def test_serve_refuses_a_bad_config_at_start(tmp_path: Path) -> None:
    p = write(tmp_path, BAD[1][0])
    r = _cli("serve", "--config", str(p))
    assert r.returncode == 2
    assert f"{p}: routes.receivers: unknown receiver 'nobody'" in r.stderr


def test_only_if_set_leaves_out_what_its_variables_do_not_switch_on(tmp_path: Path) -> None:
    text = (
        "receivers:\n"
        "  - name: a\n"
        "    telegram: [{only_if_set: [TG_TOKEN], bot_token: '${TG_TOKEN}', chat_id: 42}]\n"
        "    log: [{}]\n"
        "heartbeat: {only_if_set: [BEAT_URL], url: '${BEAT_URL}'}\n"
        "routes: {receiver: a}\n"
    )
    p = write(tmp_path, text)
    off = load_settings(p, env={"TG_TOKEN": "  "})  # blank counts as unset
    assert off.receiver("a").channels.get("telegram", []) == [] and off.heartbeat is None
    assert off.notes == ["receivers[0].telegram[0] is off: TG_TOKEN not set", "heartbeat is off: BEAT_URL not set"]
    on = load_settings(p, env={"TG_TOKEN": "1:x", "BEAT_URL": "https://hc.example/ping/1"})
    assert on.receiver("a").channels["telegram"][0].bot_token == "1:x" and on.heartbeat is not None and on.notes == []
    bad = write(tmp_path, "receivers: [{name: a, log: [{only_if_set: TG_TOKEN}]}]\nroutes: {receiver: a}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(bad, env={})
    assert info.value.path == "receivers[0].log[0].only_if_set"


def test_a_blank_token_means_no_auth_only_where_the_config_allows_it(tmp_path: Path) -> None:
    base = "receivers: [{name: a, log: [{}]}]\nroutes: {receiver: a}\n"
    allowed = "server: {listen: '0.0.0.0:9095', auth: {bearer_token: '${T:-}', allow_unauthenticated: true}}\n"
    s = load_settings(write(tmp_path, base + allowed), env={})
    assert not s.server.auth.enabled
    assert load_settings(write(tmp_path, base + allowed), env={"T": "tok"}).server.auth.bearer_token == "tok"
    with pytest.raises(ConfigError, match="is empty"):
        load_settings(write(tmp_path, base + "server: {auth: {bearer_token: '${T:-}'}}\n"), env={})
