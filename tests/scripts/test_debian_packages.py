"""scripts/debian-packages.sh, the README's first step: it installs what is missing with apt-get, as root directly
(a fresh Debian image has no sudo) and as a user through sudo; it installs nothing when all is there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

SCRIPT = ROOT / "scripts" / "debian-packages.sh"


def fake_bin(tmp_path: Path, uid: int, installed: set[str], with_sudo: bool) -> Path:
    """Stand-ins for id, dpkg-query, apt-get and sudo that record what they were asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    scripts = {
        "id": f"echo {uid}",
        "dpkg-query": "for last; do :; done\n"
        + 'case " '
        + " ".join(sorted(installed))
        + ' " in *" $last "*) echo \'install ok installed\';; *) exit 1;; esac',
        "apt-get": f'echo "apt-get $*" >> {calls}',
        "env": f'shift; echo "env $*" >> {calls}',
    }
    if with_sudo:
        scripts["sudo"] = f'echo "sudo $1" >> {calls}; "$@"'
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    # the one real tool the script uses besides the shell; nothing else of the machine (its own sudo) is visible
    (bin_dir / "grep").symlink_to(shutil.which("grep") or "/bin/grep")
    return bin_dir


def run(tmp_path: Path, bin_dir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    env = {**os.environ, "PATH": str(bin_dir)}
    r = subprocess.run(["/bin/sh", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30)
    calls = tmp_path / "calls"
    return r, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize(("uid", "prefix"), [(0, ""), (1000, "sudo ")])
def test_installs_what_is_missing_as_root_or_through_sudo(tmp_path: Path, uid: int, prefix: str) -> None:
    r, calls = run(tmp_path, fake_bin(tmp_path, uid, {"make"}, with_sudo=True))
    assert r.returncode == 0, r.stderr
    expected = ["apt-get update -qq", "env apt-get install -y -qq python3-venv curl"]
    if prefix:
        expected = ["sudo apt-get", "apt-get update -qq", "sudo env", "env apt-get install -y -qq python3-venv curl"]
    assert [c.replace("DEBIAN_FRONTEND=noninteractive ", "") for c in calls] == expected


def test_the_stack_packages_come_with_stack(tmp_path: Path) -> None:
    r, calls = run(tmp_path, fake_bin(tmp_path, 0, {"make", "python3-venv", "curl"}, with_sudo=False), "--stack")
    assert r.returncode == 0, r.stderr
    assert calls[-1].endswith(
        "apt-get install -y -qq prometheus prometheus-alertmanager prometheus-node-exporter "
        "prometheus-postgres-exporter prometheus-redis-exporter"
    )


def test_nothing_to_do_when_everything_is_there(tmp_path: Path) -> None:
    r, calls = run(tmp_path, fake_bin(tmp_path, 1000, {"make", "python3-venv", "curl"}, with_sudo=False))
    assert r.returncode == 0 and calls == []


def test_a_user_without_sudo_is_told_what_to_do(tmp_path: Path) -> None:
    r, calls = run(tmp_path, fake_bin(tmp_path, 1000, set(), with_sudo=False))
    assert r.returncode == 1 and calls == []
    assert "installing make python3-venv curl needs root: run this as root, or install sudo" in r.stderr
