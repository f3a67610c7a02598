"""The notifier's layers, as docs/architecture.md draws them, checked over every module's imports (read with `ast`,
so an import inside a function counts too): data flows api -> pipeline -> store -> delivery -> channels, the
configuration is a leaf, and nothing imports the layer that calls it. The next upward import fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "notifier"
LEAVES = {  # may import nothing of the notifier but other leaves
    "notifier.configtypes",
    "notifier.errors",
    "notifier.domain",
    "notifier.rates",
    "notifier.matchers",
    "notifier.digest_schedule",
    "notifier.clock",
    "notifier.failpoints",
    "notifier.tasks",
    "notifier.settings_access",
    "notifier.settings",
}
# a module (or every module under a package) -> what it may not import
FORBIDDEN: dict[str, set[str]] = {
    "notifier.charts": {  # draws from Prometheus; knows nothing of the store, the outbox or the channels
        "notifier.store",
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.channels",
        "notifier.templates",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.runtime",
        "notifier.app",
    },
    "notifier.store": {
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.channels",
        "notifier.templates",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.digests",
        "notifier.heartbeat",
        "notifier.runtime",
        "notifier.app",
        "notifier.config",
        "notifier.silences",
    },
    "notifier.pipeline": {
        "notifier.delivery",
        "notifier.channels",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.digests",
        "notifier.heartbeat",
        "notifier.runtime",
        "notifier.app",
        "notifier.silences",
    },
    "notifier.delivery": {
        "notifier.pipeline",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.digests",
        "notifier.heartbeat",
        "notifier.runtime",
        "notifier.app",
        "notifier.silences",
    },
    "notifier.channels": {
        "notifier.store",
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.digests",
        "notifier.runtime",
        "notifier.app",
    },
    "notifier.templates": {
        "notifier.store",
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.channels",
        "notifier.actions",
        "notifier.api",
        "notifier.ui",
        "notifier.runtime",
    },
    "notifier.actions": {"notifier.pipeline", "notifier.delivery", "notifier.api", "notifier.ui", "notifier.runtime"},
    "notifier.digests": {"notifier.pipeline", "notifier.delivery", "notifier.channels", "notifier.api", "notifier.ui"},
    "notifier.escalation": {
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.channels",
        "notifier.api",
        "notifier.ui",
    },
    "notifier.watchdog": {"notifier.pipeline", "notifier.delivery", "notifier.channels", "notifier.api", "notifier.ui"},
    "notifier.heartbeat": {
        "notifier.pipeline",
        "notifier.delivery",
        "notifier.channels",
        "notifier.api",
        "notifier.ui",
    },
    "notifier.messages": {"notifier.store", "notifier.delivery", "notifier.channels", "notifier.pipeline"},
    "notifier.api": {"notifier.ui"},
    "notifier.ui": {"notifier.api", "notifier.delivery", "notifier.runtime"},  # pages touch what View holds
    "notifier.metrics": {"notifier.channels", "notifier.store"},
}
PROVIDERS = ("telegram", "slack_sdk", "aiosmtplib")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The notifier's modules a file imports, by their full names (`from notifier.store import actions` names
    notifier.store.actions and notifier.store)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("notifier")}


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations() -> list[str]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
    found: list[str] = []
    for name, path in sorted(modules.items()):
        imported = {m for m in imports_of(path) if m in modules or any(under(k, m) for k in modules)}
        if name in LEAVES:
            found += [f"{name} (a leaf) imports {m}" for m in sorted(imported) if m not in LEAVES and m != "notifier"]
        for layer, banned in FORBIDDEN.items():
            if under(name, layer):
                found += [f"{name} imports {m}" for m in sorted(imported) for b in banned if under(m, b)]
    return found


def test_no_module_imports_against_the_layers() -> None:
    assert violations() == []


def test_the_check_sees_a_planted_upward_import() -> None:
    """The check can fail: a store module that imports the pipeline is caught."""
    planted = PACKAGE / "store" / "_planted_for_the_layer_test.py"
    planted.write_text("from notifier.pipeline import decisions\n")
    try:
        found = violations()
    finally:
        planted.unlink()
    assert found and all(
        v.startswith("notifier.store._planted_for_the_layer_test imports notifier.pipeline") for v in found
    )


def test_the_store_and_the_pipeline_load_no_provider_library() -> None:
    code = (
        "import sys; import notifier.store, notifier.store.engine, notifier.pipeline.intake, notifier.settings; "
        f"print(','.join(m for m in {PROVIDERS!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_no_module_is_longer_than_450_lines() -> None:
    """The notifier's modules, and the exporter's, the benchmarks', the scripts' and the tests' too."""
    files = [p for part in ("notifier", "exporter", "bench", "scripts", "tests") for p in (ROOT / part).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}
