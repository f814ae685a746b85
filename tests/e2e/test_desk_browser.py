"""The desk and the board in a real browser (Debian's Chromium, driven by Playwright): an agent
signs in, goes ready, accepts an email whose HTML carries a script, an event handler, a
`javascript:` link, a remote tracking image and remote CSS (nothing runs, nothing remote is
fetched), replies and closes, and the customer gets the reply threaded to the email; another
agent cannot open it; a wrong password gets no session; the supervisor's board shows the queue
shrink without a reload."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import uvicorn
from playwright.async_api import Locator, Page, async_playwright
from temporalio.client import Client

from ace_email.analysis import mime
from ace_email.config.settings import Settings
from ace_email.contracts import ids
from ace_email.contracts.contact import ContactStatus
from ace_email.desk.app import Desk, build_app
from ace_email.desk.auth import hash_password
from ace_email.operations.registry import sync
from devtools import browser
from tests.routing_support import new_tag, queued_in, reach, routed_settings, routing_worker
from tests.support import CUSTOMER, SECOND_AGENT_EMAIL, MailStack, eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.embedded_only, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"bob": "bob-desk-pw", "carol": "carol-desk-pw", "sam": "sam-board-pw"}


class Trap:
    """A loopback HTTP server that counts every request: nothing in the email may reach it."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        trap = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                trap.hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trap() -> Iterator[Trap]:
    running = Trap()
    yield running
    running.close()


def hostile_email(trap: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Carla Customer <{CUSTOMER}>"
    message["To"] = "support@example.com"
    message["Subject"] = "My order and a hostile HTML body"
    message["Message-ID"] = f"<hostile-{new_tag()}@example.org>"
    message.set_content("Hello, where is my order 4711?")
    message.add_alternative(
        f"""<html><head><style>body {{ background: url({trap}/style-bg.png) }}</style>
<link rel="stylesheet" href="{trap}/sheet.css"></head><body>
<p>Hello, where is my <b>order 4711</b>?</p>
<script>fetch("{trap}/script"); window.top.pwned = true;</script>
<img src="x" onerror="fetch('{trap}/onerror')">
<a href="javascript:fetch('{trap}/javascript-link')">track my parcel</a>
<img src="{trap}/tracking.png" width="1" height="1">
<div style="background-image: url({trap}/div-bg.png)">Thanks</div>
</body></html>""",
        subtype="html",
    )
    message.add_attachment(
        b"%PDF-1.4 order", maintype="application", subtype="pdf", filename="order.pdf"
    )
    return message.as_bytes()


@asynccontextmanager
async def desk_server(settings: Settings, client: Client) -> AsyncIterator[str]:
    """desk.py's application under uvicorn on a free loopback port."""
    port = free_port()
    app = build_app(Desk(settings, client))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def desk_settings(mail: MailStack, temporal_address: str, tag: str) -> Settings:
    settings = routed_settings(
        mail,
        temporal_address,
        tag,
        queues=[{"name": f"support-{tag}"}],
        agents=[
            {
                "id": f"bob-{tag}",
                "name": "Bob Builtin",
                "password_hash": hash_password(PASSWORDS["bob"]),
            },
            {
                "id": f"carol-{tag}",
                "name": "Carol",
                "password_hash": hash_password(PASSWORDS["carol"]),
            },
        ],
        routing={"offer_timeout_seconds": 120},
        account_extra={"extract": {"order_id": r"(?i)order\s*#?\s*(\d{4,10})"}},
    )
    supervisor = {
        "id": f"sam-{tag}",
        "name": "Sam Supervisor",
        "password_hash": hash_password(PASSWORDS["sam"]),
    }
    return Settings.model_validate(
        settings.model_dump(by_alias=True) | {"supervisors": [supervisor]}
    )


async def sign_in(page: Page, base: str, user: str, password: str) -> None:
    await page.goto(f"{base}/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("[data-action=sign-in]")


def screenshots() -> Path | None:
    """Where the desk's and the board's pictures go besides the test's own folder."""
    chosen = os.environ.get("ACE_SCREENSHOTS")
    return Path(chosen) if chosen else None


async def test_an_agent_handles_a_hostile_email_in_the_browser_and_the_board_follows(
    client: Client, mail: MailStack, temporal_address: str, tmp_path: Path, trap: Trap
) -> None:
    reason = browser.unavailable_reason()
    if reason is not None:
        if os.environ.get("BROWSER_REQUIRED"):
            pytest.fail(f"chromium is required: {reason}")
        pytest.skip(reason)
    tag = new_tag()
    queue = f"support-{tag}"
    settings = desk_settings(mail, temporal_address, tag)
    async with (
        routing_worker(client, mail, settings) as pipeline,
        desk_server(settings, client) as base,
        async_playwright() as playwright,
    ):
        await sync(client, settings)
        chromium = await playwright.chromium.launch(
            executable_path=str(browser.CHROMIUM), args=["--no-sandbox"]
        )
        bob_page = await (await chromium.new_context()).new_page()
        dialogs: list[str] = []
        bob_page.on("dialog", lambda dialog: dialogs.append(dialog.message))

        # A wrong password: a clear message, and no session.
        await sign_in(bob_page, base, f"bob-{tag}", "not-his-password")
        assert "Wrong user name or password" in await bob_page.inner_text("[data-error=sign-in]")
        await bob_page.goto(f"{base}/desk")
        assert bob_page.url.startswith(f"{base}/login")

        # The supervisor watches the board; two emails wait.
        board = await (await chromium.new_context()).new_page()
        await sign_in(board, base, f"sam-{tag}", PASSWORDS["sam"])
        await board.wait_for_url(f"{base}/board")
        raw = hostile_email(trap.url)
        await pipeline.mail.send(raw)
        contact_id = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))
        await reach(client, contact_id, ContactStatus.QUEUED)
        second = hostile_email(trap.url).replace(b"hostile HTML body", b"second question")
        await pipeline.mail.send(second)
        await queued_in(client, queue, 2)
        waiting = board.locator(f'[data-queue="{queue}"]')
        await expect_attribute(waiting, "data-waiting", "2")

        # Bob signs in and goes ready: the first is offered to him, the board shows one less.
        await sign_in(bob_page, base, f"bob-{tag}", PASSWORDS["bob"])
        await bob_page.wait_for_url(f"{base}/desk")
        await bob_page.click("[data-presence=ready]")
        row = bob_page.locator(f'tr[data-contact-id="{contact_id}"][data-status="offered"]')
        await row.wait_for(timeout=15_000)
        await expect_attribute(waiting, "data-waiting", "1")
        await board.screenshot(path=str(tmp_path / "board.png"), full_page=True)
        await bob_page.screenshot(path=str(tmp_path / "desk.png"), full_page=True)

        await row.locator("[data-action=accept]").click()
        await bob_page.wait_for_url(f"{base}/desk/contacts/{contact_id}")
        frame = bob_page.frame_locator("iframe#body")
        await frame.locator("text=order 4711").first.wait_for()
        await frame.locator("text=track my parcel").click()
        await asyncio.sleep(1.5)
        assert trap.hits == [] and dialogs == []
        assert await bob_page.evaluate("window.pwned === undefined")
        assert await bob_page.inner_text('[data-contact-data="order_id"]') == "4711"

        # Bob forwards it to a colleague outside with a note, once, and it shows.
        await bob_page.fill("[data-field=forward-to]", SECOND_AGENT_EMAIL)
        await bob_page.fill("textarea[name=note]", "Could you check the warehouse?")
        await bob_page.click("[data-action=forward]")
        await bob_page.wait_for_url(f"{base}/desk/contacts/{contact_id}")
        await bob_page.locator("[data-forward=forward]").wait_for(timeout=15_000)

        async def forwarded() -> bool:
            (sent_on,) = await mail.messages(SECOND_AGENT_EMAIL)
            assert sent_on["Subject"].startswith("Fwd: My order and a hostile HTML body [#")
            return True

        await eventually(forwarded, timeout=30)
        await bob_page.screenshot(path=str(tmp_path / "contact.png"), full_page=True)

        download = await bob_page.request.get(f"{base}/desk/contacts/{contact_id}/attachments/0")
        assert download.headers["content-disposition"].startswith("attachment;")
        assert download.headers["x-content-type-options"] == "nosniff"
        assert await download.body() == b"%PDF-1.4 order"

        # Carol may not open Bob's contact.
        carol = await (await chromium.new_context()).new_page()
        await sign_in(carol, base, f"carol-{tag}", PASSWORDS["carol"])
        answer = await carol.goto(f"{base}/desk/contacts/{contact_id}")
        assert answer is not None and answer.status in (403, 404)
        body = await carol.request.get(f"{base}/desk/contacts/{contact_id}/body")
        assert body.status in (403, 404)

        # Bob replies and closes; the customer gets the reply, threaded.
        await bob_page.fill("textarea[name=body]", "Your order 4711 left our warehouse today.")
        await bob_page.check("input[name=close]")
        await bob_page.click("[data-action=send-reply]")
        await bob_page.wait_for_url(f"{base}/desk")
        original_id = mime.analyse(raw).message_id

        async def replied() -> bool:
            threaded = [
                mime.body_text(m.as_bytes())
                for m in await mail.messages(CUSTOMER)
                if m["In-Reply-To"] == original_id
            ]
            assert any("left our warehouse" in text for text in threaded), threaded
            return True

        await eventually(replied, timeout=60)
        await reach(client, contact_id, ContactStatus.CLOSED, timeout=60)
        await asyncio.sleep(1.0)
        assert trap.hits == [] and dialogs == []
        await chromium.close()
    chosen = screenshots()
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        for name in ("desk.png", "board.png", "contact.png"):
            shutil.copy(tmp_path / name, chosen / name)


async def expect_attribute(locator: Locator, name: str, value: str, timeout: float = 10) -> None:
    """The attribute reaches `value` without a reload (the page is live)."""

    async def reached() -> bool:
        assert await locator.get_attribute(name) == value
        return True

    await eventually(reached, timeout=timeout)


async def test_sign_ins_are_limited_and_changes_need_the_csrf_token(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    settings = desk_settings(mail, temporal_address, tag)
    async with desk_server(settings, client) as base, httpx.AsyncClient(base_url=base) as http:
        for _ in range(5):
            wrong = await http.post("/login", data={"username": f"bob-{tag}", "password": "wrong"})
            assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
            assert "user" not in wrong.headers.get("set-cookie", "")
        right = await http.post(
            "/login", data={"username": f"bob-{tag}", "password": PASSWORDS["bob"]}
        )
        assert right.status_code == 429 and "Too many attempts" in right.text
    async with desk_server(settings, client) as base, httpx.AsyncClient(base_url=base) as http:
        signed_in = await http.post(
            "/login", data={"username": f"bob-{tag}", "password": PASSWORDS["bob"]}
        )
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/desk"
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        forged = await http.post("/desk/presence", data={"presence": "ready"})
        assert forged.status_code == 403 and "Stale form" in forged.text
        board = await http.get("/board")
        assert board.status_code == 403
        page = await http.get("/desk")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        signed_out = await http.post("/logout", data={"csrf": "wrong"})
        assert signed_out.status_code == 403


def csrf_of(page: str) -> str:
    match = re.search(r'data-csrf="([^"]+)"', page)
    assert match, page[:500]
    return match.group(1)


async def test_a_supervisor_assigns_and_closes_and_an_agent_gives_a_contact_back(
    client: Client, mail: MailStack, temporal_address: str
) -> None:
    tag = new_tag()
    settings = desk_settings(mail, temporal_address, tag)
    async with (
        routing_worker(client, mail, settings) as pipeline,
        desk_server(settings, client) as base,
        httpx.AsyncClient(base_url=base) as sam,
        httpx.AsyncClient(base_url=base) as bob,
    ):
        await sync(client, settings)
        raw = hostile_email("http://127.0.0.1:9")
        await pipeline.mail.send(raw)
        contact_id = ids.contact_workflow_id(pipeline.account, mime.message_key(raw))
        await reach(client, contact_id, ContactStatus.QUEUED)

        await sam.post("/login", data={"username": f"sam-{tag}", "password": PASSWORDS["sam"]})
        page = await sam.get(f"/board/contacts/{contact_id}")
        assert page.status_code == 200
        assert "Received" in page.text and f"Queued in support-{tag}" in page.text
        assert f"/workflows/{contact_id}" in page.text  # the link into the Web UI
        token = csrf_of(page.text)
        assigned = await sam.post(
            f"/board/contacts/{contact_id}/assign", data={"csrf": token, "agent": f"bob-{tag}"}
        )
        assert assigned.status_code == 303
        await reach(client, contact_id, ContactStatus.ASSIGNED)

        await bob.post("/login", data={"username": f"bob-{tag}", "password": PASSWORDS["bob"]})
        mine = await bob.get(f"/desk/contacts/{contact_id}")
        assert mine.status_code == 200 and 'data-action="send-reply"' in mine.text
        back = await bob.post(
            f"/desk/contacts/{contact_id}/requeue", data={"csrf": csrf_of(mine.text)}
        )
        assert back.status_code == 303 and back.headers["location"] == "/desk"
        await reach(client, contact_id, ContactStatus.QUEUED)

        closed = await sam.post(f"/board/contacts/{contact_id}/close", data={"csrf": token})
        assert closed.status_code == 303
        await reach(client, contact_id, ContactStatus.CLOSED)
