"""An Alertmanager 0.25 for the chat-action tests, routing nowhere: the notifier makes and expires its silences."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.notifier.actions.chat import AM_CONFIG


@pytest.fixture
def am_url(tmp_path: Path, alertmanager: Callable[[Path], str]) -> str:
    config = tmp_path / "am.yml"
    config.write_text(AM_CONFIG)
    return alertmanager(config)
