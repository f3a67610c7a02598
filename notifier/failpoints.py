"""Named moments at which a crash test has the process killed, to check what a crash at exactly that moment leaves
behind (docs/reliability.md lists them).

Inert unless the environment variable NOTIFIER_FAILPOINTS names points when the process starts:
`NOTIFIER_FAILPOINTS="worker.sent.alert"` kills the process with SIGKILL the first time a message is accepted by its
provider and before that is written down; `worker.sent.alert@2` the second time. SIGKILL, not an exception: nothing
of the process may run after it (no `finally`, no shutdown), as after a power cut or an OOM kill.
"""

from __future__ import annotations

import os
import signal

ENV = "NOTIFIER_FAILPOINTS"


def _parse(spec: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in spec.replace(",", " ").split():
        name, _, nth = item.partition("@")
        armed[name] = int(nth) if nth.isdigit() and int(nth) > 0 else 1
    return armed


_armed = _parse(os.environ.get(ENV, ""))


def reached(name: str) -> None:
    """The process is at the moment `name`: die here if a test armed it (on its n-th arrival)."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
