"""docker-compose.monitoring.yml and the Dockerfile, tested statically (no Docker engine runs here): the compose
file parses, every file it mounts exists, every scrape target is a service on its container port, ports are the
README's, images are pinned, secrets come from the environment."""

from __future__ import annotations

import re
from typing import Any

import yaml

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


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
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
        for secret in svc.get("secrets", []):
            assert c["secrets"][secret] == {"environment": "NOTIFIER_TOKEN"}
    assert c["networks"]["traderagent"]["external"] is True and c["networks"]["traderagent"]["name"]


def test_ports_are_the_readmes_and_prometheus_and_alertmanager_stay_on_loopback() -> None:
    services = compose()["services"]
    for name, host_port in README_PORTS.items():
        (mapping,) = services[name]["ports"]
        parts = mapping.split(":")
        assert parts[-2] == host_port, (name, mapping)
        assert int(parts[-1]) == CONTAINER_PORTS[name], (name, mapping)
    assert services["prometheus"]["ports"][0].startswith("127.0.0.1:")
    assert services["alertmanager"]["ports"][0].startswith("127.0.0.1:")


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
            assert w["http_config"]["authorization"]["credentials_file"] == "/run/secrets/notifier_token"


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
    password = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert password.startswith("${GRAFANA_ADMIN_PASSWORD")  # from the environment, required
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
    assert re.search(r"^USER app$", text, re.M)
    assert re.search(r"^HEALTHCHECK ", text, re.M)
    assert 'CMD ["notifier", "serve"]' in text
    for path in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
        assert (ROOT / path).exists(), path
