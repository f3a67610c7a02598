"""The "Deploy on a server" files: the systemd unit passes `systemd-analyze verify` without a warning, and the
production config it reads is valid with its variables set."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from notifier.config import load_settings
from tests.helpers import ROOT, need, production_example

UNIT = ROOT / "examples" / "notifier.service"


def test_the_systemd_unit_verifies_cleanly(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze (Debian's systemd package)")
    assert analyze is not None
    # the unit names /opt/notifier, where the README installs it; here, this environment's notifier
    notifier = Path(sys.executable).parent / "notifier"
    unit = tmp_path / "notifier.service"
    unit.write_text(UNIT.read_text().replace("/opt/notifier/bin/notifier", str(notifier)))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and not run.stderr.strip() and not run.stdout.strip(), run.stdout + run.stderr
    text = UNIT.read_text()
    for hardening in ("ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=notifier", "User=notifier"):
        assert hardening in text


def test_a_misspelt_unit_is_caught(tmp_path: Path) -> None:
    """The check above can fail: systemd only warns about a bad value, and the test counts a warning."""
    analyze = shutil.which("systemd-analyze")
    need(analyze is not None, "systemd-analyze (Debian's systemd package)")
    assert analyze is not None
    notifier = Path(sys.executable).parent / "notifier"
    unit = tmp_path / "notifier.service"
    text = UNIT.read_text().replace("/opt/notifier/bin/notifier", str(notifier))
    unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystem=stricter"))
    run = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Failed to parse protect system value" in run.stderr


def test_the_production_config_is_valid_with_absolute_paths(tmp_path: Path) -> None:
    text = (ROOT / "examples" / "notifier.production.yml").read_text()
    assert "/etc/notifier/secrets/" in text and "sqlite:////var/lib/notifier/notifier.db" in text
    settings = load_settings(production_example(tmp_path), env={})
    assert settings.storage.url == "sqlite:////var/lib/notifier/notifier.db"
