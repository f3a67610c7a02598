"""docker-compose.monitoring.yml and the Dockerfile, tested statically (no Docker engine runs here): the compose
file parses with its variables unset and set (interpolated as compose does), every file it mounts exists, every
scrape target is a service on its container port, ports are the README's and on loopback unless asked, images are
pinned, the notifier's config starts with no secret and switches channels on with theirs."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from notifier.config import load_settings
from tests.helpers import ROOT

COMPOSE = ROOT / "docker-compose.monitoring.yml"
README_PORTS = {
    "grafana": "3000",
    "prometheus": "9090",
    "alertmanager": "9093",
    "bot-exporter": "9100",
    "node-exporter": "9101",
    "postgres-exporter": "9102",
    "redis-exporter": "9103",
    "notifier": "9095",
}
CONTAINER_PORTS = {
    "prometheus": 9090,
    "alertmanager": 9093,
    "grafana": 3000,
    "notifier": 9095,
    "bot-exporter": 9100,
    "node-exporter": 9100,
    "postgres-exporter": 9187,
    "redis-exporter": 9121,
}


REQUIRED = {  # the two settings the compose file cannot guess; no secret is required
    "BOT_DATABASE_URL": "postgresql://bot:pw@postgres:5432/traderagent",
    "BOT_DATABASE_DSN": "postgresql://bot:pw@postgres:5432/traderagent?sslmode=disable",
}
EVERYTHING = {
    **REQUIRED,
    "NOTIFIER_TOKEN": "n0t1f1er-t0ken",
    "GRAFANA_ADMIN_PASSWORD": "gr4fana",
    "TELEGRAM_BOT_TOKEN": "123456:ABC",
    "TELEGRAM_CHAT_ID": "-1001234567890",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/X0",
    "SMTP_HOST": "smtp.example.com",
    "SMTP_USERNAME": "alerts",
    "SMTP_PASSWORD": "sm7p",
    "ALERT_EMAIL_FROM": "alerts@example.com",
    "ALERT_EMAIL_TO": "oncall@example.com",
}
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, $$."""

    def repl(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and empty:
            raise ValueError(f"{name}: {arg}")
        if op in (":-", "-") and empty:
            return arg
        return value or ""

    return _VAR.sub(repl, text)


def compose(env: Mapping[str, str] = REQUIRED) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    return doc


def test_compose_parses_and_defines_everything_it_uses() -> None:
    c = compose()
    services = c["services"]
    assert set(README_PORTS) <= set(services)
    for name, svc in services.items():
        for net in svc.get("networks", []):
            assert net in c["networks"], (name, net)
        for dep in svc.get("depends_on", []):
            assert dep in services, (name, dep)
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), (name, src)
            elif not src.startswith("/"):
                assert src in c["volumes"], (name, src)  # named volumes are declared
        assert "secrets" not in svc, name  # every secret is optional, from the environment
    assert c["networks"]["traderagent"]["external"] is True and c["networks"]["traderagent"]["name"]


@pytest.mark.parametrize(
    ("env", "bind"), [(REQUIRED, "127.0.0.1"), ({**REQUIRED, "BIND_ADDRESS": "0.0.0.0"}, "0.0.0.0")]
)
def test_ports_are_the_readmes_on_loopback_unless_asked(env: dict[str, str], bind: str) -> None:
    services = compose(env)["services"]
    for name, host_port in README_PORTS.items():
        (mapping,) = services[name]["ports"]
        address, published, container = mapping.split(":")
        assert published == host_port, (name, mapping)
        assert int(container) == CONTAINER_PORTS[name], (name, mapping)
        assert address == ("127.0.0.1" if name in ("prometheus", "alertmanager") else bind), (name, mapping)


def test_the_compose_file_needs_the_bots_database_and_nothing_else() -> None:
    with pytest.raises(ValueError, match="BOT_DATABASE_URL"):
        compose({"BOT_DATABASE_DSN": REQUIRED["BOT_DATABASE_DSN"]})
    with pytest.raises(ValueError, match="BOT_DATABASE_DSN"):
        compose({"BOT_DATABASE_URL": REQUIRED["BOT_DATABASE_URL"]})
    assert compose(REQUIRED)["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "admin"


def _notifier_settings(env: Mapping[str, str]) -> Any:
    """The notifier's config as the notifier container sees it: the mounted file, the environment compose gives."""
    svc = compose(env)["services"]["notifier"]
    config = svc["command"][svc["command"].index("--config") + 1]
    (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == config]
    # `KEY:` with nothing after it (an empty interpolation) leaves the variable unset in the container
    environment = {k: str(v) for k, v in svc["environment"].items() if v is not None}
    return load_settings(ROOT / mount.split(":")[0], env=environment)


def test_with_no_secret_the_notifier_starts_and_delivers_to_the_log() -> None:
    s = _notifier_settings(REQUIRED)
    assert not s.server.auth.enabled and s.server.auth.allow_unauthenticated
    assert [key for r in s.receivers for key, _channel, _t in r.targets()] == ["oncall/log/0", "console/log/0"]
    assert "receiver 'oncall' has no target on: its messages go to the log" in s.notes
    assert any(n.startswith("receivers[0].telegram[0] is off: TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID") for n in s.notes)
    am = compose(REQUIRED)["services"]["alertmanager"]
    assert am["environment"]["NOTIFIER_TOKEN"] is None  # unset: Alertmanager's token file is empty


def test_with_their_secrets_telegram_slack_email_and_auth_switch_on() -> None:
    s = _notifier_settings(EVERYTHING)
    assert s.server.auth.enabled and s.server.auth.bearer_token == EVERYTHING["NOTIFIER_TOKEN"]
    keys = [key for r in s.receivers for key, _channel, _t in r.targets()]
    assert keys == ["oncall/telegram/0", "oncall/slack/0", "oncall/email/0", "console/log/0"]
    assert s.notes == []
    am = compose(EVERYTHING)["services"]["alertmanager"]
    assert am["environment"]["NOTIFIER_TOKEN"] == EVERYTHING["NOTIFIER_TOKEN"]
    assert "> /alertmanager/notifier_token" in am["command"][0]


def test_every_scrape_target_is_a_service_on_its_container_port() -> None:
    services = compose()["services"]
    prom = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "prometheus.yml").read_text())
    for sc in prom["scrape_configs"]:
        for target in sc["static_configs"][0]["targets"]:
            host, port = target.split(":")
            if host == "localhost":
                continue
            assert host in services, (sc["job_name"], target)
            assert int(port) == CONTAINER_PORTS[host], (sc["job_name"], target)
    (am,) = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == "alertmanager:9093"
    alertmanager = yaml.safe_load((ROOT / "monitoring" / "alertmanager" / "alertmanager.yml").read_text())
    for r in alertmanager["receivers"]:
        for w in r.get("webhook_configs", []):
            assert w["url"] == "http://notifier:9095/webhook/alertmanager"
            assert w["http_config"]["authorization"]["credentials_file"] == "/alertmanager/notifier_token"


def test_images_pinned_healthchecks_retention_and_host_filesystem() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.search(r":v?\d+\.\d+", image), (name, image)  # a version, never latest
        if name not in ("redis-exporter", "bot-exporter", "notifier"):
            assert "healthcheck" in svc, name
    assert "--storage.tsdb.retention.time=30d" in services["prometheus"]["command"]
    assert "--path.rootfs=/host" in services["node-exporter"]["command"]
    assert "/:/host:ro,rslave" in services["node-exporter"]["volumes"]
    raw = yaml.safe_load(COMPOSE.read_text())["services"]
    assert raw["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD")
    assert raw["notifier"]["build"] == "." and raw["bot-exporter"]["build"] == "."
    text = COMPOSE.read_text()
    assert not re.search(
        r"(?i)(password|token|secret)[ \t]*:[ \t]*['\"]?[A-Za-z0-9]{8,}", text
    )  # no secret in the file


def test_grafana_gets_provisioning_and_dashboards() -> None:
    vols = compose()["services"]["grafana"]["volumes"]
    assert "./monitoring/grafana/provisioning:/etc/grafana/provisioning:ro" in vols
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in vols
    prov = yaml.safe_load((ROOT / "monitoring/grafana/provisioning/dashboards/traderagent.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_multistage_slim_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert len(froms) >= 2 and all("slim" in f for f in froms)
    assert re.search(r"^USER 10001:10001$", text, re.M)  # the app user, by number (hadolint DL3066)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert 'CMD ["notifier", "serve"]' in text
    # the image carries its config: `docker run -p 127.0.0.1:9095:9095 IMAGE` starts with no variable given
    assert "COPY monitoring/notifier/notifier.yml /etc/notifier/notifier.yml" in text
    assert "NOTIFIER_CONFIG=/etc/notifier/notifier.yml" in text
    s = load_settings(ROOT / "monitoring/notifier/notifier.yml", env={})
    assert s.server.listen == "0.0.0.0:9095" and [k for r in s.receivers for k, _c, _t in r.targets()]
    for path in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / path).exists(), path


def test_the_images_config_serves_with_no_secret_and_says_what_is_off(tmp_path: Any) -> None:
    import shutil

    import httpx

    from tests.helpers import ServerProcess, fixture_bytes, free_port

    config = tmp_path / "notifier.yml"
    shutil.copy(ROOT / "monitoring/notifier/notifier.yml", config)
    port = free_port()
    env = {"NOTIFIER_LISTEN": f"127.0.0.1:{port}", "NOTIFIER_STORAGE_URL": f"sqlite:///{tmp_path}/n.db"}
    server = ServerProcess(config, port, env=env).start()
    try:
        r = httpx.post(
            f"{server.url}/webhook/alertmanager",
            content=fixture_bytes("01-critical-firing-two-alerts.json"),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 20
        while '"target": "oncall/log/0"' not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assert server.terminate() == 0
    log = server.log.read_text()
    assert "config: receiver 'oncall' has no target on: its messages go to the log" in log
    assert '"target": "oncall/log/0"' in log and "CriticalDrawdown" in log
