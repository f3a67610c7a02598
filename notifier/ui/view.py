"""What every page of the web view is given (`View`, Litestar's dependency `view`) and how a page refuses: who is
looking, and whether a form came from one of our pages with its session's CSRF token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from litestar import MediaType, Request, Response
from litestar.response import Redirect, Template

from notifier.charts import Charter
from notifier.clock import Clock
from notifier.settings import Settings
from notifier.store import Store
from notifier.store.ids import GROUP_HASH
from notifier.ui.auth import COOKIE, Session, Sessions

HTML = MediaType.HTML


@dataclass(frozen=True, slots=True)
class View:
    """What every page is given (Litestar's dependency `view`), and all that a page may touch: the settings, the
    clock, the store (pages read it; Retry writes through it), the charts, a nudge for the delivery worker once a
    dead letter is pending again, and the logins (None while the view is off)."""

    settings: Settings
    clock: Clock
    store: Store
    sessions: Sessions | None
    charter: Charter | None
    wake_worker: Callable[[], None]

    @property
    def zone(self) -> str:
        """The time zone the pages show times in."""
        ui = self.settings.ui
        return ui.timezone if ui is not None else "UTC"

    async def session(self, request: Request[Any, Any, Any]) -> Session | None:
        if self.sessions is None:
            return None
        return await self.sessions.session(request.cookies.get(COOKIE), self.clock.now())

    async def viewer(self, request: Request[Any, Any, Any]) -> Session | Response[Any]:
        """Who is looking: the session, or the answer for someone who may not (the view is off, or the browser
        goes to the login)."""
        if self.sessions is None:
            return off()
        session = await self.session(request)
        return session if session is not None else Redirect("/ui/login")

    async def group_viewer(self, request: Request[Any, Any, Any]) -> tuple[Session, str] | Response[Any]:
        """Who is looking at which group (its id from the path), or the answer for a request that may not."""
        session = await self.viewer(request)
        if not isinstance(session, Session):
            return session
        group = str(request.path_params["group_hash"])
        if not GROUP_HASH.fullmatch(group):
            return refused(404, "No such alert group: a group's id is 64 hexadecimal digits.")
        return session, group

    def page(self, template: str, session: Session, **context: Any) -> Template:
        return Template(
            template_name=template,
            context={"user": session.user, "csrf": session.csrf, "zone": self.zone, **context},
            media_type=HTML,
        )

    async def form_ok(
        self, request: Request[Any, Any, Any], form: dict[str, Any]
    ) -> tuple[Session | None, Response[Any] | None]:
        """The session when the POST comes from a logged-in page of ours: a session, the form's CSRF token for it,
        and our origin; else the answer."""
        if self.sessions is None:
            return None, off()
        if not same_origin(request):
            return None, refused(403, "This form did not come from the notifier's page.")
        session = await self.session(request)
        if session is None:
            return None, refused(401, "Log in first: /ui/login")
        if not Sessions.csrf_ok(session, form.get("csrf")):
            return None, refused(
                403, "This form is stale or did not come from the notifier's page: reload it and try again."
            )
        return session, None


def off() -> Response[Any]:
    return refused(404, "The web view is off: give `ui: {users: [...]}` in the config.")


def refused(status: int, message: str) -> Response[Any]:
    return Response(content=message, status_code=status, media_type=MediaType.TEXT)


def same_origin(request: Request[Any, Any, Any]) -> bool:
    """A browser's POST says where its page came from: only the notifier's own pages may post its forms."""
    origin = request.headers.get("origin")
    if origin is None:
        return True  # not a browser's form (curl), which has no cookie of the view to misuse either
    return urlsplit(origin).netloc.lower() == request.headers.get("host", "").lower()
