"""Property-based fuzzing of the webhook body: whatever arrives, the answer is never a 5xx and the server lives."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import console_settings, fixture_json
from tests.notifier.harness import post, running

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(["\x00", "a\x00b", "0001-01-01T00:00:00+01:00", "2026-11-26T04:05:13", "\u202e"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
BASE = fixture_json("01-critical-firing-two-alerts.json")
KEYS = list(BASE) + ["alerts.0." + k for k in BASE["alerts"][0]] + ["alerts.0.labels.severity"]


def _mutate(base: dict[str, Any], path: str, value: Any, delete: bool) -> dict[str, Any]:
    doc = json.loads(json.dumps(base))
    node: Any = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif delete:
        node.pop(last, None)
    else:
        node[last] = value
    return doc


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.builds(
        lambda k, v, d: json.dumps(_mutate(BASE, k, v, d)).encode(), st.sampled_from(KEYS), json_values, st.booleans()
    ),
)


async def test_fuzzed_bodies_never_get_a_5xx(store_url: str) -> None:
    async with running(console_settings(store_url)) as (client, _rt):
        seen: list[int] = []

        @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
        @given(body=bodies)
        def run(body: bytes) -> None:
            seen.append(len(body))
            bodies_to_send.append(body)

        bodies_to_send: list[bytes] = []
        run()
        for body in bodies_to_send:
            r = await post(client, body)
            assert r.status_code < 500, (body, r.status_code, r.text)
            assert r.status_code in (202, 400), (body, r.status_code, r.text)
            if r.status_code == 400:
                assert isinstance(r.json()["error"], str)
        assert (await client.get("/readyz")).status_code == 200
        assert len(seen) >= 100
