"""The soak's constants: the run's credentials, its receivers and chats, and the templates that make every message
read back as one line per alert."""

from __future__ import annotations

import re
from datetime import UTC, datetime

TOKEN = "soak-bearer-token"
BOT = "123456:soak-token"
HUGE = 10_000  # alerts of the one huge group
LISTED = 100  # alerts a message spells out (message.max_alerts); the rest are counted ("+N more alerts")
PRESSER = 7001  # the Telegram user who acknowledges team3's groups during the run
TEAMS = 4  # team0: Telegram; team1: Slack (bot token, threads); team2: email; team3: Telegram, escalated to ntfy
CHATS = {"team0": 4201, "team3": 4204}  # private chats: one message a second each
SLACK_CHANNEL = "C0SOAK1"
ESCALATE_AFTER = (
    40.0  # team3's step: ntfy when a group is not acknowledged (nor resolved) this long after its first send
)
EVAL = 2.0  # seconds between the generator's posts (Prometheus' evaluation interval)
RECORD_WITHIN = 5.0  # seconds from a provider's answer by which a live replica on a live store has recorded a send
SOAK_LINE = re.compile(r"SOAK (\S+) (firing|resolved)")
SOAK_ALERT = re.compile(r"g\d+a\d+")  # the generator's alerts; others (WatchdogMissing) are not in the ledger
# A storm summary tells one line per group (its alert name, firing while any alert of it fires), not per alert.
SOAK_GROUP = re.compile(r"Soak(\d+)\b")
TEMPLATE = '{% macro alert(a, detail) -%}\nSOAK {{ a.labels.get("soak", a.name) }} {{ a.status }}\n{% endmacro %}'
EMAIL_TEMPLATE = (
    '{{ title }}\n{% for a in alerts %}SOAK {{ a.labels.get("soak", a.name) }} {{ a.status }}\n{% endfor %}'
)


def hhmm(t: float) -> str:
    """A quiet-hours bound: the time of day of `t` in UTC (a window that ends at midnight ends at 24:00)."""
    text = datetime.fromtimestamp(t, UTC).strftime("%H:%M")
    return "24:00" if text == "00:00" else text


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")
