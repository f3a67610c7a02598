"""The Litestar application: routes, error format, and the lifespan that starts and stops the runtime."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from notifier.api import chat, handlers
from notifier.api.hygiene import hygiene
from notifier.api.refusals import RefusalLog
from notifier.runtime import Runtime
from notifier.settings import Settings
from notifier.store.urls import redact_url
from notifier.templates.context import plural
from notifier.templates.safety import clean
from notifier.ui import charts as ui_charts
from notifier.ui import pages as ui_pages
from notifier.ui.auth import Sessions
from notifier.ui.view import View

log = logging.getLogger("notifier")
GIL_SWITCH_INTERVAL = 0.0005
# Net new objects between two young collections (Python's default is 700): see tune_interpreter.
GC_YOUNG_THRESHOLD = 20_000


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return handlers.error(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))


def _unexpected(_request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return handlers.error(500, "internal error; see the notifier's log")


def _shown_clean(engine: JinjaTemplateEngine) -> None:
    """Every value a page shows loses its invisible and control characters (a right-to-left override in a label
    would turn what follows around), as the channels' messages do; autoescaping then escapes what is left."""

    def finalize(value: Any) -> Any:
        return clean(value) if isinstance(value, str) else value

    engine.engine.finalize = finalize


def tune_interpreter() -> None:
    """Settings for a process that is only the notifier (`notifier serve`, and in-process benchmarks), made once it
    has started; a notifier inside another program leaves that program's interpreter alone. Without them, webhooks
    wait behind garbage collections and GIL hand-overs under load."""
    # The store's writer thread needs the GIL for a moment before and after each commit's disk flush; with
    # Python's default hand-over interval, every webhook of the batch would wait a whole interval for it.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    # Everything built at start (modules, the app, SQLAlchemy's and Litestar's caches) lives as long as the
    # process. Frozen, the cyclic collector no longer walks it on every full collection, which webhooks in flight
    # set off by surviving a few young ones.
    gc.collect()
    gc.freeze()
    # A young collection walks every container allocated since the last one and still alive: under load, mostly
    # the objects of webhooks waiting for their commit, seen again and again. Hardly anything the notifier makes is
    # cyclic garbage (reference counting frees the rest at once), so young collections can be rarer.
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, gen1, gen2)


def create_app(
    settings: Settings, runtime: Runtime | None = None, *, own_process: bool = False, **build: Any
) -> Litestar:
    """The notifier as an ASGI app. `build` goes to Runtime.build (clock, registry, channel_factory, ...).
    `own_process`: the app is the whole process (`notifier serve`), so it may tune the interpreter for serving."""
    rt = runtime or Runtime.build(settings, **build)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        auth = settings.server.auth
        if not auth.enabled and not settings.server.loopback_only:
            log.warning(
                "serving %s without auth (server.auth.allow_unauthenticated): anyone who can reach the port may "
                "post alerts and read the outbox. Publish it on 127.0.0.1 only, or set a bearer token.",
                settings.server.listen,
            )
        for note in settings.notes:
            log.warning("config: %s", note)
        await rt.start()
        if own_process:
            tune_interpreter()
        log.info(
            "notifier ready on %s, store %s, %s",
            settings.server.listen,
            redact_url(settings.storage.url),
            plural(len(settings.receivers), "receiver"),
        )
        try:
            yield
        finally:
            await rt.stop()
            log.info("notifier stopped")

    ui = settings.ui
    sessions = Sessions(rt.store, ui.session_lifetime, [u.name for u in ui.users]) if ui is not None else None
    view = View(rt.settings, rt.clock, rt.store, sessions, rt.charter, rt.worker.wake)

    def the_runtime() -> Runtime:
        return rt

    def web_view() -> View:
        return view

    app = Litestar(
        dependencies={
            "rt": Provide(the_runtime, sync_to_thread=False),
            "view": Provide(web_view, sync_to_thread=False),
        },
        route_handlers=[
            handlers.webhook,
            handlers.validate_only,
            handlers.healthz,
            handlers.readyz,
            handlers.metrics,
            handlers.list_deliveries,
            handlers.retry_delivery,
            handlers.group_timeline,
            chat.telegram_updates,
            chat.slack_actions,
            chat.slack_commands,
            *ui_pages.PAGES,
            ui_charts.group_chart,
        ],
        template_config=TemplateConfig(
            directory=Path(ui_pages.__file__).parent / "templates",
            engine=JinjaTemplateEngine,
            engine_callback=_shown_clean,
        ),
        middleware=[hygiene],
        lifespan=[lifespan],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected},
        request_max_body_size=settings.server.max_body_bytes,
        openapi_config=None,
        logging_config=None,  # the CLI sets up logging; Litestar's own would reformat every line
        debug=False,
    )
    app.state.runtime = rt
    app.state.refusals = RefusalLog(rt.clock.now)
    return app
