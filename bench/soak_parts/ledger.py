"""The soak's ledger: every change of every alert against what each receiver was told."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx

from bench.soak_parts.common import CHATS, ESCALATE_AFTER, LISTED, SOAK_ALERT, SOAK_GROUP, SOAK_LINE, TEAMS
from bench.soak_parts.faults import Happened
from bench.soak_parts.load import Change, Press, acknowledged
from bench.soak_parts.parts import Providers, Replica
from tests.fakes.smtp import mail_text


@dataclass
class Told:
    at: float
    team: str
    group: str
    text: str
    states: dict[str, str]


def watchdog_alarms(fakes: Providers, start: float) -> list[str]:
    """Messages of the notifier's watchdog (the Watchdog stopped coming, or came back): none is expected, since
    one peer always sends it; but a replica cannot record a sighting while PostgreSQL is away."""
    return [
        f"t+{s.at - start:.0f}s {m.group(1)}"
        for s in list(fakes.tg.fake.sent)
        if (m := re.search(r"SOAK WatchdogMissing (firing|resolved)", s.text))
    ]


def _sent(fakes: Providers) -> list[tuple[float, str, str]]:
    """(when, receiver, text) of every message the providers took."""
    sent: list[tuple[float, str, str]] = [
        (m.at, "team0" if m.chat_id == CHATS["team0"] else "team3", m.text) for m in list(fakes.tg.fake.sent)
    ]
    sent += [(m.at, "team1", m.all_text) for m in list(fakes.slack.posted)]
    sent += [(m.at, "team2", mail_text(m.message, "plain")) for m in list(fakes.smtp.messages)]
    return sent


def told(fakes: Providers) -> list[Told]:
    """Every message of the soak's alerts that a receiver got, from each provider's log."""
    out = []
    for at, team, text in _sent(fakes):
        states = {m.group(1): m.group(2) for m in SOAK_LINE.finditer(text) if SOAK_ALERT.fullmatch(m.group(1))}
        if states:
            group = next(iter(states)).split("a")[0]
            out.append(Told(at, team, group, text, states))
    return out


def summaries(fakes: Providers) -> list[Told]:
    """The storm summaries a receiver got: `states` holds a line per group (g<n> -> firing | resolved)."""
    out = []
    for at, team, text in _sent(fakes):
        groups = {
            f"g{n.group(1)}": m.group(2)
            for m in SOAK_LINE.finditer(text)
            if (n := SOAK_GROUP.fullmatch(m.group(1))) is not None
        }
        if groups:
            out.append(Told(at, team, "storm", text, groups))
    return out


def escalations(
    changes: list[Change],
    fakes: Providers,
    messages: list[Told],
    presses: list[Press],
    faults: Happened,
) -> dict[str, Any]:
    """team3's escalation to ntfy: a group still firing (any of its alerts) well past the step's `after`, counted
    from its first message (steps count from the first send), must have paged; no page may come before `after`
    has passed since the group began firing; and none while the group is acknowledged (from the notifier's answer
    to the press until an alert of the group fires anew, which ends the acknowledgement). A step that came due
    while the database was away pages as soon as it is back, unless the group resolved meanwhile: then whether the
    notifier heard of the resolve before its first pass is a race, and either way is right (a page is not required,
    nor is one forbidden)."""
    answered = acknowledged(fakes.tg.fake)
    acked: dict[str, list[float]] = {}  # group -> when its acknowledgements were answered
    for press in presses:
        if press.query in answered:
            acked.setdefault(press.group, []).append(answered[press.query])
    fired_at: dict[str, list[float]] = {}
    for c in changes:
        if c.status == "firing":
            fired_at.setdefault(c.alert.split("a")[0], []).append(c.at)
    first_sent = sorted((m.at, m.group) for m in messages if m.team == "team3")
    periods: dict[str, list[tuple[float, float]]] = {}
    firing: dict[str, set[str]] = {}
    opened: dict[str, float] = {}
    for c in sorted(changes, key=lambda c: c.at):
        g = c.alert.split("a")[0]
        if int(g[1:]) % TEAMS != 3:
            continue
        now_firing = firing.setdefault(g, set())
        if c.status == "firing":
            if not now_firing:
                opened[g] = c.at
            now_firing.add(c.alert)
        else:
            now_firing.discard(c.alert)
            if not now_firing and g in opened:
                periods.setdefault(g, []).append((opened.pop(g), c.at))
    pages: list[tuple[float, str]] = []
    said: list[tuple[float, str, str]] = []  # every word ntfy got of a group: (when, group, how), to explain a miss
    for p in list(fakes.ntfy.published):
        if "AlertStorm" in p.title:  # pages that waited behind ntfy's limit, folded into one: a line per group
            for ln in p.message.splitlines():
                if "at once" in ln:
                    continue
                resolved = "resolved" in ln.lower()
                for n in SOAK_GROUP.findall(ln):
                    said.append((p.at, f"g{n}", "a storm summary's line saying resolved" if resolved else "a page"))
                    if not resolved:
                        pages.append((p.at, f"g{n}"))
        elif m := SOAK_GROUP.search(p.title):
            resolved = "RESOLVED" in p.title
            said.append((p.at, f"g{m.group(1)}", "a resolution" if resolved else "a page"))
            if not resolved:
                pages.append((p.at, f"g{m.group(1)}"))
    expected, missed, early, after_ack, excused = 0, [], [], [], []
    for g, spans in periods.items():
        previous_end = float("-inf")
        for a, b in spans:
            got = [t for t, pg in pages if pg == g and a <= t <= b + 30]
            sent = next((t for t, mg in first_sent if mg == g and t >= a), float("inf"))
            acks = [k for k in acked.get(g, []) if a <= k <= b]
            for k in acks:
                ends = min([t for t in fired_at.get(g, []) if t > k] + [b])
                # a page already on its way when the acknowledgement was stored may still land just after it
                after_ack += [f"{g} paged {t - k:.0f}s after its acknowledgement" for t in got if k + 3 < t < ends]
            # acknowledged: whether it had to page depends on when; the check above is what must hold
            due = sent + ESCALATE_AFTER
            away = [(x, y) for x, y in faults.outages if x <= due <= y + 2 and b <= y + 5]
            if not acks and b - sent > ESCALATE_AFTER + 30 and away and not got:
                t0 = faults.start
                excused.append(
                    f"{g}: its step came due at t+{due - t0:.0f}s while the database was away, and it resolved at "
                    f"t+{b - t0:.0f}s, before the database was back at t+{away[0][1] - t0:.0f}s"
                )
            elif not acks and b - sent > ESCALATE_AFTER + 30:
                expected += 1
                if not got:
                    near = [f"{how} at {t - b:+.0f}s" for t, sg, how in said if sg == g and a - 60 <= t <= b + 600]
                    missed.append(
                        f"{g} firing for {b - a:.0f}s, {b - sent:.0f}s after its first message; from its end ntfy got "
                        + (", ".join(near) if near else "nothing")
                    )
            if a - previous_end > 60:  # a quick re-fire may still be the chain of the period before
                early += [f"{g} paged {t - a:.0f}s after it began firing" for t in got if t - a < ESCALATE_AFTER - 5]
            previous_end = b
    return {
        "expected": expected,
        "pages": len(pages),
        "missed": missed,
        "early": early,
        "after_ack": after_ack,
        "resolved_while_away": excused,
    }


def _episode_never_told(c: Change, times: list[float], told: list[Told], faults: Happened) -> bool:
    """Whether the resolve `c` ends an episode that began in the same outage of the database and that no message
    showed firing."""
    began = max((t for t in times if t < c.at), default=None)
    if began is None or not faults.both_away(began, c.at):
        return False
    return not any(m.states[c.alert] == "firing" and began <= m.at <= c.at + 60 for m in told)


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


MORE = re.compile(r"\+([\d,]+) more alerts")


def told_huge(
    g: str,
    size: int,
    changes: list[Change],
    messages: list[Told],
    t0: float,
    per_team: dict[str, dict[str, int]],
    latencies: list[float],
    lost: list[str],
    folded: list[str],
    storms: list[Told],
) -> None:
    """A group of more alerts than a message spells out, whose alerts change together: each change is told by a
    message that shows LISTED of them in the new state and counts the rest ("+N more alerts"), or folded into a
    storm summary that tells the group in that state."""
    team = f"team{int(g[1:]) % TEAMS}"
    row = per_team.setdefault(team, {"changes": 0, "told": 0, "folded": 0, "lost": 0})
    moments = sorted({(c.at, c.status) for c in changes if c.alert.split("a")[0] == g})
    for i, (at, status) in enumerate(moments):
        nxt = moments[i + 1][0] if i + 1 < len(moments) else float("inf")
        row["changes"] += 1
        shown = [
            m.at
            for m in messages
            if m.group == g
            and at <= m.at < nxt + 60
            and len(m.states) == LISTED
            and set(m.states.values()) == {status}
            and any(int(n.replace(",", "")) == size - LISTED for n in MORE.findall(m.text))
        ]
        summarised = [x.at for x in storms if x.team == team and x.states.get(g) == status and at <= x.at < nxt + 60]
        if shown:
            row["told"] += 1
            latencies.append(min(shown) - at)
        elif summarised:
            row["folded"] += 1
            folded.append(
                f"the {size} alerts of {g} {status} at t+{at - t0:.0f}s, in the storm summary at "
                f"t+{summarised[0] - t0:.0f}s"
            )
        else:
            row["lost"] += 1
            lost.append(f"the {size} alerts of {g} {status} at t+{at - t0:.0f}s")


def ledger(
    changes: list[Change], messages: list[Told], faults: Happened, storms: list[Told] | None = None
) -> dict[str, Any]:
    t0 = faults.start
    by_alert: dict[str, list[Told]] = {}
    for m in messages:
        for a in m.states:
            by_alert.setdefault(a, []).append(m)
    per_team: dict[str, dict[str, int]] = {}
    lost: list[str] = []
    folded: list[str] = []
    latencies: list[float] = []
    deferred: list[float] = []  # of changes quiet hours held back
    starts: dict[str, list[float]] = {}
    times_of: dict[str, list[float]] = {}  # alert -> when it changed, in order
    members: dict[str, set[str]] = {}  # group -> its alerts
    for c in changes:
        if c.status == "firing":
            starts.setdefault(c.alert, []).append(c.at)
        times_of.setdefault(c.alert, []).append(c.at)
        members.setdefault(c.alert.split("a")[0], set()).add(c.alert)
    huge = {g for g, alerts in members.items() if len(alerts) > LISTED}
    for g in sorted(huge):
        told_huge(g, len(members[g]), changes, messages, t0, per_team, latencies, lost, folded, storms or [])
    for c in changes:
        if c.alert.split("a")[0] in huge:
            continue
        team = f"team{int(c.alert[1:].split('a')[0]) % TEAMS}"
        row = per_team.setdefault(team, {"changes": 0, "told": 0, "folded": 0, "lost": 0})
        row["changes"] += 1
        # told: a message at or after the change that shows it, before the alert's next change
        nxt = next((t for t in times_of[c.alert] if t > c.at), float("inf"))
        after = sorted((m for m in by_alert.get(c.alert, []) if c.at <= m.at < nxt + 60), key=lambda m: m.at)
        # quiet hours hold a change until they end: its group's catch-up may come long after the next change
        held = after
        if faults.quiet is not None and faults.deferred(team, c.at) and nxt < faults.quiet[1]:
            ends = faults.quiet[1] + 60
            held = sorted((m for m in by_alert.get(c.alert, []) if c.at <= m.at < ends), key=lambda m: m.at)
        shown = [m.at for m in after if m.states[c.alert] == c.status]  # later ones belong to a later episode
        group = c.alert.split("a")[0]
        summarised = [s.at for s in storms or [] if s.team == team and group in s.states and c.at <= s.at < nxt + 60]
        if shown:
            row["told"] += 1
            # quiet hours hold a change back until they end, by design: its wait is not the pipeline's latency
            (deferred if faults.deferred(team, c.at) else latencies).append(min(shown) - c.at)
        elif summarised:
            # Taken into a storm summary (more than storm.threshold groups waited for the target at once): it tells
            # each group's state, not each alert's, as configured.
            row["folded"] += 1
            folded.append(
                f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, in the storm summary at t+{summarised[0] - t0:.0f}s"
            )
        elif faults.both_away(c.at, nxt) and not [m for m in after if m.at < nxt]:
            # The alert changed and changed back while no replica could store a notification: Alertmanager
            # retries with its newest state only, and tells nothing when that equals what it last delivered.
            row["folded"] += 1
            folded.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s and back at t+{nxt - t0:.0f}s, store away")
        elif c.status == "resolved" and _episode_never_told(c, times_of[c.alert], by_alert.get(c.alert, []), faults):
            # It fired and resolved while no replica could store a notification: Alertmanager never delivered the
            # firing, so it has no resolve to tell either (it tells a resolve only to whom it told the firing).
            row["folded"] += 1
            folded.append(f"{c.alert} fired and resolved at t+{c.at - t0:.0f}s, both while the database was away")
        elif held is not after and any(m.at >= nxt for m in held):
            # Quiet hours held it, and it changed again before they ended: the group's one catch-up tells the
            # newest state, as `mode: defer` says.
            row["folded"] += 1
            folded.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, changed again while quiet hours held it")
        elif after and after[0].at >= nxt and after[0].states[c.alert] != c.status:
            # Changed again before any message of its group went out: the message that waited (in the outbox
            # behind a rate limit or a failing provider, or in Alertmanager's retries while no replica could
            # store it) took the newer state. Alertmanager folds the same way within group_interval.
            row["folded"] += 1
            folded.append(
                f"{c.alert} {c.status} at t+{c.at - t0:.0f}s, changed again at t+{nxt - t0:.0f}s, "
                f"first shown {after[0].states[c.alert]} at t+{after[0].at - t0:.0f}s"
            )
        else:
            row["lost"] += 1
            shown_as = [f"t+{m.at - t0:.0f}s {m.states[c.alert]}" for m in by_alert.get(c.alert, [])]
            lost.append(f"{c.alert} {c.status} at t+{c.at - t0:.0f}s (its messages: {', '.join(shown_as) or 'none'})")
    went_back: list[str] = []
    for alert, ms in by_alert.items():
        seen_resolved_at: float | None = None
        for m in sorted(ms, key=lambda m: m.at):
            if m.states[alert] == "resolved":
                seen_resolved_at = m.at
            elif seen_resolved_at is not None:
                if not any(seen_resolved_at - 60 <= s <= m.at for s in starts.get(alert, [])):
                    went_back.append(f"{alert} shown firing at {m.at:.0f} after resolved at {seen_resolved_at:.0f}")
                seen_resolved_at = None
    changed_at: dict[str, list[float]] = {}
    for c in changes:
        changed_at.setdefault(c.alert.split("a")[0], []).append(c.at)
    duplicates: list[str] = []
    unexplained: list[str] = []
    last_by_group: dict[str, Told] = {}
    for m in sorted(messages, key=lambda m: m.at):
        prev = last_by_group.get(m.group)
        # the same text again with no change of its alerts in between (after a fold it may be told again)
        if prev is not None and prev.text == m.text and not any(prev.at < t <= m.at for t in changed_at[m.group]):
            cause = faults.duplicate_cause(prev.at, m.at)
            line = f"group {m.group} at t+{m.at - faults.start:.0f}s (first at t+{prev.at - faults.start:.0f}s)"
            duplicates.append(f"{line}: {cause or 'unexplained'}")
            if cause is None:
                unexplained.append(line)
        last_by_group[m.group] = m
    summarised_last: dict[str, tuple[float, str]] = {}  # group -> its newest storm summary line
    for summary in sorted(storms or [], key=lambda s: s.at):
        summarised_last.update({g: (summary.at, status) for g, status in summary.states.items()})
    stuck = sorted(
        g
        for g, m in last_by_group.items()
        if any(s == "firing" for s in m.states.values())
        and not (g in summarised_last and summarised_last[g][0] > m.at and summarised_last[g][1] == "resolved")
    )
    recovery: dict[str, float] = {}
    times = sorted(m.at for m in messages)
    for kind, end in faults.ends:
        later = [t for t in times if t >= end]
        recovery[f"{kind} ended t+{end - faults.start:.0f}s"] = round(later[0] - end, 1) if later else -1.0
    return {
        "changes": len(changes),
        "told": sum(r["told"] for r in per_team.values()),
        "lost": len(lost),
        "lost_list": lost[:50],
        "folded": len(folded),
        "folded_list": folded[:50],
        "went_back": len(went_back),
        "went_back_list": went_back[:50],
        "duplicates": len(duplicates),
        "duplicates_legitimate": len(duplicates) - len(unexplained),
        "duplicates_list": duplicates[:50],
        "duplicates_unexplained": unexplained[:50],
        "stuck_firing": stuck,
        "per_receiver": per_team,
        "latency_s": {
            "p50": round(pct(latencies, 0.5), 2),
            "p99": round(pct(latencies, 0.99), 2),
            "max": round(max(latencies, default=0), 2),
        },
        "deferred_by_quiet_hours": {"told": len(deferred), "max_s": round(max(deferred, default=0), 1)},
        "recovery_s": recovery,
        "messages": len(messages),
    }


def outbox_empty(replicas: list[Replica]) -> bool:
    """Nothing waits in the shared outbox, as a live replica's gauge says (all share one database)."""
    for r in replicas:
        try:
            text = httpx.get(f"{r.url}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        waiting = re.findall(r"^notifier_outbox_pending\{[^}]*\} ([0-9.e+]+)$", text, re.M)
        return sum(float(v) for v in waiting) == 0
    return False
