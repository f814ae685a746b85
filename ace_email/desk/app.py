"""The desk's web application (Starlette): sign-in, the agent's desk, a contact, the
supervisor's board, and the event stream that keeps them live. Every change is a POST with the
session's CSRF token; every page reads the shared snapshot; every action goes through the same
operations as `starter.py`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from temporalio.client import Client
from temporalio.service import RPCError

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts.contact import ContactState, ContactStatus
from ace_email.contracts.queues import Presence
from ace_email.desk import html_body
from ace_email.desk.auth import SignInLimiter, User, users, verify
from ace_email.desk.snapshot import Snapshot
from ace_email.operations import agents_queues, contacts, desk, forwarding
from ace_email.operations.common import Refused, contact_state

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; frame-src 'self'; img-src 'self'; style-src 'self'; "
        "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
Handler = Callable[[Request], Awaitable[Response]]


class Desk:
    """The application's state: settings, Temporal client, users, snapshot, limiter."""

    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.client = client
        self.users = users(settings)
        self.snapshot = Snapshot(client, settings)
        self.limiter = SignInLimiter()

    def user(self, request: Request) -> User | None:
        user_id = request.session.get("user")
        return self.users.get(user_id) if isinstance(user_id, str) else None


def _csrf(request: Request) -> str:
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(24)
        request.session["csrf"] = token
    return token


def _page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context |= {"csrf": _csrf(request), "now": datetime.now(UTC)}
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


def build_app(desk_state: Desk) -> Starlette:
    d = desk_state

    def signed_in(role: str | None = None) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def guarded(request: Request) -> Response:
                user = d.user(request)
                if user is None:
                    return RedirectResponse(f"/login?next={quote(request.url.path)}", 303)
                if role is not None and user.role != role:
                    return _page(request, "error.html", 403, user=user, message="Not yours.")
                if request.method == "POST":
                    form = await request.form()
                    sent = form.get("csrf") or request.headers.get("x-csrf-token")
                    if not secrets.compare_digest(str(sent or ""), _csrf(request)):
                        return _page(
                            request, "error.html", 403, user=user, message="Stale form: reload."
                        )
                request.state.user = user
                return await handler(request)

            return guarded

        return wrap

    async def home(request: Request) -> Response:
        user = d.user(request)
        if user is None:
            return RedirectResponse("/login", 303)
        return RedirectResponse("/board" if user.role == "supervisor" else "/desk", 303)

    async def login(request: Request) -> Response:
        if request.method == "GET":
            return _page(request, "login.html", user=None, error=None)
        form = await request.form()
        username, password = str(form.get("username", "")), str(form.get("password", ""))
        address = request.client.host if request.client else "?"
        wait = d.limiter.blocked(username, address)
        if wait:
            message = f"Too many attempts. Try again in {int(wait) + 1} s."
            return _page(request, "login.html", 429, user=None, error=message)
        user = d.users.get(username)
        if not await asyncio.to_thread(verify, user, password) or user is None:
            d.limiter.failed(username, address)
            request.session.clear()
            message = "Wrong user name or password."
            return _page(request, "login.html", 401, user=None, error=message)
        d.limiter.succeeded(username)
        request.session.clear()
        request.session["user"] = user.id
        request.session["csrf"] = secrets.token_urlsafe(24)
        return RedirectResponse("/board" if user.role == "supervisor" else "/desk", 303)

    @signed_in()
    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", 303)

    @signed_in("agent")
    async def agent_desk(request: Request) -> Response:
        user: User = request.state.user
        picture = d.snapshot.picture
        row = picture.agent(user.id) or {"presence": "offline", "load": 0, "capacity": 0}
        name = "desk_live.html" if request.query_params.get("fragment") else "desk.html"
        return _page(
            request, name, user=user, me=row, contacts=picture.held_by(user.id), picture=picture
        )

    @signed_in("agent")
    async def presence(request: Request) -> Response:
        user: User = request.state.user
        form = await request.form()
        try:
            chosen = Presence(str(form.get("presence")))
            await agents_queues.set_presence(d.client, d.settings, user.id, chosen)
        except (ValueError, Refused) as exc:
            return _page(request, "error.html", 400, user=user, message=str(exc))
        await d.snapshot.refresh()
        return RedirectResponse("/desk", 303)

    async def own_contact(request: Request) -> ContactState | None:
        """The contact, if it is the signed-in agent's (offered, held or waiting for them)."""
        user: User = request.state.user
        try:
            state = await contact_state(d.client, request.path_params["contact_id"])
        except Refused:
            return None
        return state if user.id in (state.agent, state.waiting_for) else None

    @signed_in("agent")
    async def contact_page(request: Request) -> Response:
        user: User = request.state.user
        state = await own_contact(request)
        if state is None:
            return _page(request, "error.html", 404, user=user, message="No such contact.")
        return await _contact_view(request, user, state, "contact.html")

    async def _contact_view(
        request: Request, user: User, state: ContactState, name: str
    ) -> Response:
        shown: desk.ShownMessage | None = None
        problem = None
        if state.message is not None:
            try:
                shown = await desk.show(d.client, d.settings, state.id)
            except Refused as exc:
                problem = str(exc)
        return _page(
            request,
            name,
            user=user,
            contact=state,
            shown=shown,
            problem=problem,
            agents=d.settings.agents,
            queues=d.settings.queue_names(),
            web_ui=_web_ui_link(d.settings, state.id),
            timeline=timeline(state),
        )

    async def _raw(request: Request) -> bytes | None:
        try:
            _, raw = await desk.message(d.client, d.settings, request.path_params["contact_id"])
        except Refused:
            return None
        return raw

    async def _may_read(request: Request) -> bool:
        user: User = request.state.user
        return user.role == "supervisor" or await own_contact(request) is not None

    @signed_in()
    async def contact_body(request: Request) -> Response:
        if not await _may_read(request):
            return Response("not found", 404)
        raw = await _raw(request)
        if raw is None:
            return Response("the message is not on the mail server", 404)
        document = html_body.frame_document(mime.body_html(raw), mime.body_text(raw))
        remote = request.query_params.get("remote") == "1"
        return HTMLResponse(
            document,
            headers={
                "Content-Security-Policy": (
                    html_body.FRAME_CSP_REMOTE if remote else html_body.FRAME_CSP_LOCAL
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    @signed_in()
    async def attachment(request: Request) -> Response:
        if not await _may_read(request):
            return Response("not found", 404)
        raw = await _raw(request)
        found = mime.attachment_payload(raw, int(request.path_params["index"])) if raw else None
        if found is None:
            return Response("no such attachment", 404)
        listed, data = found
        filename = (listed.filename or f"attachment-{request.path_params['index']}").replace(
            '"', ""
        )
        return Response(
            data,
            media_type="application/octet-stream",
            headers={
                "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    @signed_in("agent")
    async def contact_action(request: Request) -> Response:
        user: User = request.state.user
        state = await own_contact(request)
        if state is None:
            return _page(request, "error.html", 404, user=user, message="No such contact.")
        form = await request.form()
        action = request.path_params["action"]
        try:
            if action in ("accept", "decline"):
                await agents_queues.answer_offer(
                    d.client, d.settings, state.id, user.id, accept=action == "accept"
                )
            elif action == "reply":
                await desk.reply(
                    d.client,
                    d.settings,
                    state.id,
                    str(form.get("body", "")),
                    close=form.get("close") is not None,
                )
            elif action in ("forward", "redirect"):
                await forwarding.send_on(
                    d.client,
                    d.settings,
                    state.id,
                    str(form.get("to", "")),
                    mode="forward" if action == "forward" else "redirect",
                    note=str(form.get("note", "")),
                    by=user.id,
                )
            else:
                await _move(action, state, form)
        except (Refused, RPCError) as exc:
            return _page(request, "error.html", 400, user=user, message=str(exc))
        await d.snapshot.refresh()
        done = action in ("decline", "close", "transfer", "requeue") or form.get("close")
        return RedirectResponse("/desk" if done else f"/desk/contacts/{state.id}", 303)

    async def _move(action: str, state: ContactState, form: Any) -> None:
        if action == "transfer":
            target = str(form.get("target", ""))
            kind, _, name = target.partition(":")
            if kind == "agent":
                await agents_queues.transfer(d.client, d.settings, state.id, agent_id=name)
            else:
                await agents_queues.transfer(d.client, d.settings, state.id, queue=name)
        elif action == "requeue":
            await agents_queues.contact_command(d.client, state.id, "requeue")
        elif action == "close":
            await agents_queues.contact_command(d.client, state.id, "close_contact")
        elif action == "assign":
            await contacts.assign(d.client, d.settings, state.id, str(form.get("agent", "")))
        else:
            raise Refused(f"unknown action {action!r}")

    @signed_in("supervisor")
    async def board(request: Request) -> Response:
        user: User = request.state.user
        picture = d.snapshot.picture
        limits = {
            q: d.settings.queue_settings(q).answer_within_seconds()
            for q in d.settings.queue_names()
        }
        name = "board_live.html" if request.query_params.get("fragment") else "board.html"
        return _page(request, name, user=user, picture=picture, limits=limits)

    @signed_in("supervisor")
    async def board_contact(request: Request) -> Response:
        user: User = request.state.user
        try:
            state = await contact_state(d.client, request.path_params["contact_id"])
        except Refused:
            return _page(request, "error.html", 404, user=user, message="No such contact.")
        return await _contact_view(request, user, state, "board_contact.html")

    @signed_in("supervisor")
    async def board_action(request: Request) -> Response:
        user: User = request.state.user
        contact_id = request.path_params["contact_id"]
        form = await request.form()
        try:
            state = await contact_state(d.client, contact_id)
            await _move(request.path_params["action"], state, form)
        except (Refused, RPCError) as exc:
            return _page(request, "error.html", 400, user=user, message=str(exc))
        await d.snapshot.refresh()
        return RedirectResponse(f"/board/contacts/{contact_id}", 303)

    @signed_in()
    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[dict[str, str]]:
            version = ""
            while True:
                version = await d.snapshot.wait_for_change(version, timeout=15.0)
                if await request.is_disconnected():
                    return
                yield {"event": "changed", "data": version}

        return EventSourceResponse(stream(), ping=15)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        d.snapshot.start()
        try:
            yield
        finally:
            await d.snapshot.stop()

    key = d.settings.desk.session_key() or secrets.token_urlsafe(32)
    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/desk", agent_desk),
            Route("/desk/presence", presence, methods=["POST"]),
            Route("/desk/contacts/{contact_id}", contact_page),
            Route("/desk/contacts/{contact_id}/body", contact_body),
            Route("/desk/contacts/{contact_id}/attachments/{index:int}", attachment),
            Route("/desk/contacts/{contact_id}/{action}", contact_action, methods=["POST"]),
            Route("/board", board),
            Route("/board/contacts/{contact_id}", board_contact),
            Route("/board/contacts/{contact_id}/{action}", board_action, methods=["POST"]),
            Route("/events", events),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie="ace_desk",
                same_site="strict",
                https_only=d.settings.desk.secure_cookies,
                max_age=12 * 3600,
            )
        ],
        lifespan=lifespan,
    )


def _web_ui_link(settings: Settings, workflow_id: str) -> str:
    base = settings.desk.web_ui_url.rstrip("/")
    return f"{base}/namespaces/{quote(settings.temporal.namespace)}/workflows/{quote(workflow_id)}"


def timeline(state: ContactState) -> list[tuple[datetime | None, str]]:
    """A contact's life in words, from its state: received, analysed, replied, queued,
    offered, with an agent, delivered, forwarded, bounced, closed."""
    steps: list[tuple[datetime | None, str]] = [(state.received_at, "Received")]
    if state.subject or state.sender:
        words = f"Analysed: from {state.sender or 'unknown'}, language {state.language or '?'}"
        if state.automatic:
            words += f"; automatic mail ({'; '.join(state.automatic_reasons[:2])})"
        steps.append((None, words))
    if state.quarantine_reason:
        steps.append((None, f"Quarantined: {state.quarantine_reason}"))
    if state.auto_reply:
        steps.append((None, f"Automatic reply {state.auto_reply}"))
    if state.queued_at:
        steps.append((state.queued_at, f"Queued in {state.queue}"))
    if state.status is ContactStatus.OFFERED and state.agent:
        steps.append((None, f"Offered to {state.agent} until {state.offer_expires_at:%H:%M:%S}"))
    if state.assigned_at and state.agent:
        verb = "Delivered to" if state.status is ContactStatus.DELIVERED else "With"
        steps.append((state.assigned_at, f"{verb} {state.agent}"))
    for sent in state.replies:
        steps.append((sent.at, f"Replied to {sent.to}" + ("" if sent.sent else " (sending)")))
    for forward in state.forwards:
        steps.append((forward.at, f"{forward.mode.capitalize()}ed to {forward.to}"))
    for note in state.bounces:
        failed = "; ".join(f"{r.address} {r.describe()}" for r in note.recipients[:3])
        steps.append((note.received_at, f"Its {note.sent_as} got a {note.kind} report: {failed}"))
    if state.bounce is not None:
        about = f" about {state.bounce_of}" if state.bounce_of else ""
        steps.append((None, f"A delivery report{about}: {state.bounce.summary()}"))
    if state.closed_at:
        steps.append((state.closed_at, "Closed"))
    return steps
