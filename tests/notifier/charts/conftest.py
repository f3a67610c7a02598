"""A real Prometheus (Debian's binary) scraping a test exporter whose values the test sets."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers import binary, free_port, wait_for_sync


@dataclass
class Exporter:
    """Serves `/metrics` with the gauges in `values` (series labels text -> value)."""

    values: dict[str, float] = field(default_factory=dict)
    port: int = 0

    def text(self) -> str:
        lines = ["# TYPE trader_drawdown_ratio gauge"]
        lines += [f"trader_drawdown_ratio{{{labels}}} {value}" for labels, value in self.values.items()]
        return "\n".join(lines) + "\n"


@dataclass
class Prometheus:
    url: str
    exporter: Exporter


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    exe = binary("prometheus")
    exporter = Exporter({'bot="grid-btc"': 0.25, 'bot="dca-eth"': 0.05})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    exporter.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: trader, static_configs: [{{targets: ['127.0.0.1:{exporter.port}']}}]}}]\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def scraped() -> bool:
        try:
            r = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(trader_drawdown_ratio[1m])"})
            result = r.json()["data"]["result"]
            return len(result) == 2 and all(float(s["value"][1]) >= 3 for s in result)
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    try:
        wait_for_sync(scraped, timeout=60)
        yield Prometheus(url, exporter)
    finally:
        proc.terminate()
        proc.wait(10)
        server.shutdown()
