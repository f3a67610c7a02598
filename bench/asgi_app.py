"""The notifier's app built from $NOTIFIER_CONFIG, for ASGI servers started by import string (granian)."""

from __future__ import annotations

import os

from litestar import Litestar

from notifier.app import create_app
from notifier.config import load_settings


def make_app() -> Litestar:
    return create_app(load_settings(os.environ["NOTIFIER_CONFIG"]), own_process=True)
