"""Prometheus' `query_range` API: the series of one expression over a time range."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


class ChartError(Exception):
    """Why no chart could be drawn (Prometheus away, the query refused, no data); said in the timeline."""


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    times: list[float]
    values: list[float]


async def query_range(
    client: httpx.AsyncClient, base_url: str, query: str, start: float, end: float, step: float
) -> list[Series]:
    try:
        r = await client.get(
            f"{base_url.rstrip('/')}/api/v1/query_range",
            params={"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
    except httpx.HTTPError as exc:
        raise ChartError(f"Prometheus unreachable: {type(exc).__name__}") from None
    try:
        body: Any = r.json()
    except ValueError:
        raise ChartError(f"Prometheus answered {r.status_code} without JSON") from None
    if r.status_code != 200 or body.get("status") != "success":
        raise ChartError(f"Prometheus refused the query ({r.status_code}): {str(body.get('error', ''))[:200]}")
    data = body.get("data") or {}
    if data.get("resultType") != "matrix":
        raise ChartError(f"Prometheus answered a {data.get('resultType')}, not a range of series")
    out = []
    for item in data.get("result") or []:
        points = [(float(t), float(v)) for t, v in item.get("values") or []]
        if points:
            out.append(Series(dict(item.get("metric") or {}), [t for t, _ in points], [v for _, v in points]))
    return out
