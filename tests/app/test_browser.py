"""The app in a real headless Chromium: type a question, watch it stream, follow its sources.

Streamlit runs as a subprocess (``streamlit run``) on a free port; the LLM is an
OpenAI-compatible server on this machine that streams its reply slowly enough to be seen
arriving; the sample site is served over HTTP so that its sources are real links.
Screenshots go to ``$SITECHAT_SCREENSHOTS`` or a temporary folder, printed by the test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitechat.testing.openai_server import OpenAICompatibleServer, Reply
from tests.doc_sites import served

from .conftest import APP, SAMPLE_SITE, build_index

pytestmark = pytest.mark.slow

pytest.importorskip("streamlit", reason="the app needs the 'app' extra (streamlit)")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs: pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (apt-get install chromium); never `playwright install`",
        allow_module_level=True,
    )

# flags that let Debian's Chromium run headless in a container, offline
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ANSWER = (
    "To delete your account, open **Settings → Account** and choose *Delete account* [1]. "
    "Your notes are kept for 30 days in case you change your mind, then erased for good [1]. "
    "Export your notes first if you want to keep a copy [2]."
)
QUESTION = "How do I delete my account?"
RECORD_ANSWER_STATES = """() => {
  window.answerStates = [];
  new MutationObserver(() => {
    const messages = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (messages.length < 2) return;
    const text = messages[1].innerText;
    const states = window.answerStates;
    if (text && states[states.length - 1] !== text) states.push(text);
  }).observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    """The sample site on a local HTTP server, so sources link somewhere real."""
    with served(SAMPLE_SITE) as url:
        yield url + "/"


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAICompatibleServer]:
    """An OpenAI-compatible server that thinks briefly, then streams ANSWER piece by piece."""
    reply = Reply(text=ANSWER, token_size=6, token_delay=0.04, first_byte_delay=0.3)
    with OpenAICompatibleServer(default_reply=reply) as server:
        yield server


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("SITECHAT_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def app_url(
    tmp_path_factory: pytest.TempPathFactory, site_url: str, llm: OpenAICompatibleServer
) -> Iterator[str]:
    """``streamlit run`` of the example app, on a free port, until the tests are done."""
    workdir = tmp_path_factory.mktemp("browser")
    index = build_index(workdir / "index", base_url=site_url)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SITECHAT_", "OPENAI_"))}
    env.update(
        SITECHAT_INDEX=index,
        SITECHAT_LLM__PROVIDER="openai",
        SITECHAT_LLM__MODEL="gpt-4o-mini",
        SITECHAT_LLM__RETRY__MAX_ATTEMPTS="1",
        SITECHAT_OPENAI__BASE_URL=llm.base_url,
        SITECHAT_APP_TITLE="Lumen Notes help",
        SITECHAT_APP_SUGGESTIONS=f"{QUESTION}|Can I use it offline?|How do I export my notes?",
    )
    command = [sys.executable, "-m", "streamlit", "run", str(APP)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--browser.gatherUsageStats", "false"]
    log = (workdir / "streamlit.log").open("w")
    process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("streamlit did not become healthy; see " + str(workdir / "streamlit.log"))
        if process.poll() is not None:
            pytest.fail("streamlit exited: " + (workdir / "streamlit.log").read_text()[-2000:])
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(app_url: str) -> Iterator[object]:
    # after app_url: Playwright's sync API keeps an event loop running on this thread,
    # and building the index needs asyncio.run
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


def test_question_streams_in_and_sources_render(
    browser: object, app_url: str, site_url: str, screenshots: Path
) -> None:
    """Typed question → status → answer growing in place → numbered sources linking the site."""
    page = browser.new_page(viewport={"width": 1280, "height": 860})  # type: ignore[attr-defined]
    page.goto(app_url)
    box = page.get_by_test_id("stChatInputTextArea")
    box.wait_for(timeout=20_000)
    page.get_by_role("button", name="Can I use it offline?").wait_for()
    page.screenshot(path=str(screenshots / "01-empty-chat.png"))

    # record, inside the page, every state the answer goes through as the DOM changes
    page.evaluate(RECORD_ANSWER_STATES)
    box.fill(QUESTION)
    box.press("Enter")
    assistant = page.get_by_test_id("stChatMessage").nth(1)
    page.wait_for_function("() => window.answerStates.some(t => t.includes('▌'))")
    page.screenshot(path=str(screenshots / "02-streaming.png"))
    page.get_by_role("button", name="Regenerate").wait_for(timeout=30_000)

    states: list[str] = page.evaluate("window.answerStates")
    assert any("Writing an answer from 5 passages" in t for t in states), states
    streaming = [t for t in states if "▌" in t]
    assert len(streaming) >= 3, streaming
    lengths = [len(t) for t in streaming]
    assert lengths == sorted(lengths), "the answer only grows while it streams"

    final = assistant.inner_text()
    assert "Export your notes first" in final
    assert "▌" not in final
    links = assistant.locator("a[href^='http://127.0.0.1']")
    hrefs = {links.nth(i).get_attribute("href") for i in range(links.count())}
    assert any(h and h.startswith(site_url) and "#" in h for h in hrefs), hrefs
    assert page.get_by_role("button", name="Regenerate").is_visible()
    page.screenshot(path=str(screenshots / "03-answer.png"), full_page=True)

    # the source links point at pages that exist
    for href in hrefs:
        assert href is not None
        with urllib.request.urlopen(href.split("#")[0], timeout=5) as response:
            assert response.status == 200

    page.get_by_role("button", name="New chat").click()
    page.get_by_test_id("stChatMessage").first.wait_for(state="detached", timeout=10_000)
    page.close()
