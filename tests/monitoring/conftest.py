"""Helpers for tests on the real Prometheus and Alertmanager binaries (Debian's prometheus, prometheus-alertmanager)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.helpers import ROOT

MON = ROOT / "monitoring"


def local_alertmanager_config(tmp: Path, webhook_url: str, token: str, **route_overrides: Any) -> Path:
    """The shipped config, pointed at a local notifier, with the token file written next to it."""
    cfg = yaml.safe_load((MON / "alertmanager" / "alertmanager.yml").read_text())
    token_file = tmp / "notifier_token"
    token_file.write_text(token)
    for r in cfg["receivers"]:
        for w in r.get("webhook_configs", []):
            w["url"] = webhook_url
            w["http_config"]["authorization"]["credentials_file"] = str(token_file)
    for route in cfg["route"]["routes"]:
        route.update(route_overrides)
    cfg["route"].update(route_overrides)
    path = tmp / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path
