"""The whole stack without Docker, from the Debian binaries: demo bot exporter -> Prometheus (the project's rules)
-> Alertmanager (the project's routing) -> notifier (log receiver). Configs are generated for localhost into
.stack/, logs go to .stack/logs/, Ctrl-C stops everything.

    make stack                      # or: .venv/bin/python scripts/stack.py --scenario crash

The end-to-end test builds the same stack with faster timings (`fast=True`): a generated copy of the rules with
shorter `for`, never an edit of the shipped files.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "monitoring"


@dataclass
class Ports:
    exporter: int = 9100
    prometheus: int = 9090
    alertmanager: int = 9093
    notifier: int = 9095


@dataclass
class Stack:
    """Generates the configs and runs the processes."""

    workdir: Path
    ports: Ports = field(default_factory=Ports)
    scenario: str = "normal"
    fast: bool = False
    token: str = "stack-token"
    notifier_config: dict[str, Any] | None = None  # the notifier's receivers and routes; default: log everything
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    # -- configs ---------------------------------------------------------------------------------------------------
    def write_configs(self) -> None:
        p = self.ports
        rules_dir = self.workdir / "rules"
        rules_dir.mkdir(exist_ok=True)
        for f in (MON / "prometheus" / "rules").glob("*.yml"):
            text = f.read_text()
            if self.fast:  # `for:` 60 times shorter (5m -> 5s): alerts fire within seconds, in the same order
                text = re.sub(r"for: (\d+)([smh])", _scaled_for, text)
            (rules_dir / f.name).write_text(text)
        interval = "1s" if self.fast else "15s"
        prom = yaml.safe_load((MON / "prometheus" / "prometheus.yml").read_text())
        prom["global"].update(scrape_interval=interval, evaluation_interval=interval)
        prom["rule_files"] = [str(rules_dir / "*.yml")]
        prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{p.alertmanager}"]
        local = {
            "prometheus": p.prometheus,
            "traderagent-bot": p.exporter,
            "alertmanager": p.alertmanager,
            "notifier": p.notifier,
        }
        prom["scrape_configs"] = [
            {**sc, "static_configs": [{"targets": [f"127.0.0.1:{local[sc['job_name']]}"]}]}
            for sc in prom["scrape_configs"]
            if sc["job_name"] in local
        ]
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(prom))

        am = yaml.safe_load((MON / "alertmanager" / "alertmanager.yml").read_text())
        token_file = self.workdir / "notifier_token"
        token_file.write_text(self.token)
        for r in am["receivers"]:
            for w in r.get("webhook_configs", []):
                w["url"] = f"http://127.0.0.1:{p.notifier}/webhook/alertmanager"
                w["http_config"]["authorization"]["credentials_file"] = str(token_file)
        if self.fast:
            for route in [am["route"], *am["route"]["routes"]]:
                route.update(group_wait="1s", group_interval="2s")
        (self.workdir / "alertmanager.yml").write_text(yaml.safe_dump(am))

        notifier = {
            "server": {"listen": f"127.0.0.1:{p.notifier}", "auth": {"bearer_token_file": str(token_file)}},
            "storage": {"url": f"sqlite:///{self.workdir}/notifier.db"},
            "delivery": {"poll_interval": "200ms"},
            **(
                self.notifier_config
                or {"receivers": [{"name": "console", "log": [{}]}], "routes": {"receiver": "console"}}
            ),
        }
        (self.workdir / "notifier.yml").write_text(yaml.safe_dump(notifier))

    # -- processes -------------------------------------------------------------------------------------------------
    def _start(self, name: str, cmd: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "127.0.0.1"},
        )

    def start(self) -> None:
        self.write_configs()
        p = self.ports
        py = sys.executable
        self._start(
            "bot-exporter",
            [
                py,
                "-m",
                "exporter",
                "--demo",
                "--demo-scenario",
                self.scenario,
                "--listen",
                f"127.0.0.1:{p.exporter}",
                "--data-dir",
                str(self.workdir / "exporter"),
                "--cache-ttl",
                "0.5" if self.fast else "5",
                "--demo-interval",
                "0.1" if self.fast else "1",
                "--demo-crash-ticks",
                "120" if self.fast else "150",
            ],
        )
        self._start("notifier", [py, "-m", "notifier", "serve", "--config", str(self.workdir / "notifier.yml")])
        self._start(
            "alertmanager",
            [
                _binary("prometheus-alertmanager"),
                f"--config.file={self.workdir / 'alertmanager.yml'}",
                f"--storage.path={self.workdir / 'alertmanager-data'}",
                f"--web.listen-address=127.0.0.1:{p.alertmanager}",
                "--cluster.listen-address=",
            ],
        )
        self._start(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{p.prometheus}",
                "--storage.tsdb.retention.time=30d",
            ],
        )
        for name, url in (
            ("bot-exporter", f"http://127.0.0.1:{p.exporter}/healthz"),
            ("notifier", f"http://127.0.0.1:{p.notifier}/readyz"),
            ("alertmanager", f"http://127.0.0.1:{p.alertmanager}/-/ready"),
            ("prometheus", f"http://127.0.0.1:{p.prometheus}/-/ready"),
        ):
            self._wait(name, url)

    def _wait(self, name: str, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self.procs[name]
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {self.logs / (name + '.log')}")
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} did not become ready; see {self.logs / (name + '.log')}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def _scaled_for(m: re.Match[str]) -> str:
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
    return f"for: {max(1, seconds // 60)}s"


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found: sudo apt-get install -y prometheus prometheus-alertmanager")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", choices=["normal", "crash", "stalled", "exchange-trouble"], default="crash")
    ap.add_argument("--workdir", default=str(ROOT / ".stack"))
    a = ap.parse_args()
    stack = Stack(Path(a.workdir), scenario=a.scenario)
    try:
        stack.start()
        p = stack.ports
        print(
            f"""The stack runs ({a.scenario} scenario). Logs: {stack.logs}
  bot exporter  http://127.0.0.1:{p.exporter}/metrics
  Prometheus    http://127.0.0.1:{p.prometheus}/alerts
  Alertmanager  http://127.0.0.1:{p.alertmanager}
  notifier      http://127.0.0.1:{p.notifier}/api/v1/deliveries (Bearer {stack.token}); notifications in {stack.logs}/notifier.log
Ctrl-C stops everything.""",
            flush=True,
        )
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
