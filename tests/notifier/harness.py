"""An in-process notifier for tests: the real app and runtime, served to an HTTP client through ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from notifier.app import create_app
from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.store.payloads import unpack
from notifier.store.tables import deliveries, notifications
from tests.helpers import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@asynccontextmanager
async def running(settings: Settings, **build: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    rt = Runtime.build(settings, **build)
    app = create_app(settings, runtime=rt)
    await rt.start()  # what the app's lifespan does; the subprocess tests run the lifespan itself
    try:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]  # Litestar's ASGI types are narrower than httpx's
        async with httpx.AsyncClient(transport=transport, base_url="http://notifier", timeout=30) as client:
            yield client, rt
    finally:
        await rt.stop()


async def post(
    client: httpx.AsyncClient,
    body: bytes | str,
    headers: dict[str, str] | None = None,
    path: str = "/webhook/alertmanager",
) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return await client.post(
        path, content=data, headers={"Content-Type": "application/json", **AUTH, **(headers or {})}
    )


async def count(rt: Runtime, table: Any = notifications, **where: Any) -> int:
    q = select(func.count()).select_from(table)
    for k, v in where.items():
        q = q.where(table.c[k] == v)
    async with rt.store.begin() as conn:
        return int(await conn.scalar(q) or 0)


async def delivery_rows(rt: Runtime) -> list[dict[str, Any]]:
    async with rt.store.begin() as conn:
        return [dict(r) for r in (await conn.execute(select(deliveries).order_by(deliveries.c.created_at))).mappings()]


async def stored_notification(conn: AsyncConnection, notification_id: str) -> dict[str, Any] | None:
    """A notification's row as the store keeps it, with `payload` the body as received (unpacked)."""
    row = (await conn.execute(select(notifications).where(notifications.c.id == notification_id))).mappings().first()
    if row is None:
        return None
    out = dict(row)
    body = unpack(out["payload"], out.pop("payload_packed"))
    out["payload"] = None if body is None else body.decode("utf-8")
    return out
