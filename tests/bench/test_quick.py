"""Every benchmark runs: each one's quick mode (tiny sizes, a few seconds) must finish and print its result line.
It checks that the benchmark works, never a speed: the figures come from full runs (`make bench-*`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from tests.helpers import ROOT, need

pytestmark = pytest.mark.slow

# benchmark -> what its result line says, and what it needs beyond Python
BENCHMARKS = {
    "charts": ("ratio on / off: p50", ()),
    "delivery_latency": ("overhead", ()),
    "exporter_events": ("ratio: RSS", ("redis",)),
    "exporter_scrape": ("scrape p50", ("postgres",)),
    "history": ("ratio (with history / empty)", ()),
    "intake": ("durable/validate-only =", ()),
    "prune": ("ratio (during / alone)", ()),
    "render": ("per-alert cost", ()),
    "replicas": ("pg x2", ("postgres",)),
    "soak": ("soak:", ("postgres", "alertmanager")),
    "storm": ("alerts_lost", ("alertmanager",)),
    "ui": ("intake with the timeline on / off", ()),
}
HELPERS = {"__init__", "asgi_app", "loadgen"}  # used by the benchmarks, not benchmarks themselves


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def test_every_benchmark_file_is_listed() -> None:
    files = {p.stem for p in (ROOT / "bench").glob("*.py")} - HELPERS
    assert files == set(BENCHMARKS), "a benchmark without a quick run here would rot unseen"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_the_benchmark_runs_in_its_quick_mode(name: str, request: pytest.FixtureRequest) -> None:
    marker, needs = BENCHMARKS[name]
    if "postgres" in needs:
        need(request.getfixturevalue("pg_available"), "PostgreSQL at 127.0.0.1:5432")
    if "redis" in needs:
        need(_answers("127.0.0.1", 6379), "Redis at 127.0.0.1:6379")
    if "alertmanager" in needs:
        need(shutil.which("prometheus-alertmanager") is not None, "Debian's prometheus-alertmanager")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{name}.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert marker in run.stdout, run.stdout[-2000:]
