"""The example Streamlit app, driven by Streamlit's AppTest (no browser, no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import sitechat
from sitechat.testing.openai_server import OpenAICompatibleServer, OpenAIFaults, Reply

from .conftest import APP, SAMPLE_SITE

AppTest = pytest.importorskip(
    "streamlit.testing.v1", reason="the app needs the 'app' extra (streamlit)"
).AppTest

SECRET_KEY = "sk-test-DO-NOT-SHOW-7f3a9c"


def start_app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=30).run()


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    """Every string the page shows, for checks that something is (not) anywhere on it."""
    parts: list[str] = []
    for kind in ("markdown", "caption", "error", "warning", "info", "success", "title"):
        parts += [str(element.value) for element in getattr(at, kind)]
    return "\n".join(parts)


@pytest.fixture
def offline_app(monkeypatch: pytest.MonkeyPatch, sample_index: str) -> AppTest:
    """The app on the sample index with sitechat's offline defaults (no key anywhere)."""
    monkeypatch.setenv("SITECHAT_INDEX", sample_index)
    monkeypatch.setenv("SITECHAT_APP_SUGGESTIONS", "How do I delete my account?|Is there a trial?")
    return start_app()


@pytest.fixture
def openai_server(
    monkeypatch: pytest.MonkeyPatch, sample_index: str
) -> Iterator[OpenAICompatibleServer]:
    """An OpenAI-compatible local server the app's 'openai' provider talks to."""
    with OpenAICompatibleServer() as server:
        monkeypatch.setenv("SITECHAT_INDEX", sample_index)
        monkeypatch.setenv("SITECHAT_LLM__PROVIDER", "openai")
        monkeypatch.setenv("SITECHAT_LLM__RETRY__MAX_ATTEMPTS", "1")
        monkeypatch.setenv("SITECHAT_OPENAI__BASE_URL", server.base_url)
        monkeypatch.setenv("SITECHAT_OPENAI__API_KEY", SECRET_KEY)
        yield server


def test_chat_round_trip_with_offline_defaults(offline_app: AppTest) -> None:
    """A question gets a streamed, cited answer with its numbered sources below it."""
    at = ask(offline_app, "How do I delete my account?")
    user, assistant = at.chat_message
    assert user.name == "user"
    assert user.markdown[0].value == "How do I delete my account?"
    assert assistant.name == "assistant"
    answer = assistant.markdown[0].value
    assert "Deleting your account" in answer
    assert "[1]" in answer
    sources = assistant.caption[0].value
    assert sources.startswith("**Sources**")
    assert "**\\[1\\]**" in sources
    assert "account\\.html" in sources  # a local page: its file name, as text
    assert "](file:" not in sources  # never a link to a file
    assert [b.label for b in at.button if b.key == "regenerate"] == ["Regenerate"]
    assert "extractive" in page_text(at.sidebar)


def test_sidebar_shows_index_model_and_top_k(offline_app: AppTest, sample_index: str) -> None:
    """The sidebar names the index and the model, and sets how many sources are retrieved."""
    sidebar = page_text(offline_app.sidebar)
    assert f"`{sample_index}`" in sidebar
    assert "extractive/extractive" in sidebar
    assert "static" in sidebar
    offline_app.sidebar.slider[0].set_value(2).run()
    at = ask(offline_app, "How do I delete my account?")
    sources = at.chat_message[1].caption
    shown = "\n".join(c.value for c in sources) + "\n".join(
        c.value for e in at.chat_message[1].expander for c in e.caption
    )
    assert shown.count("**\\[") == 2


def test_sidebar_names_the_embedder_that_built_the_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An index built with another embedder than the settings name shows the one it uses."""
    index = tmp_path / "hashing-index"
    settings = sitechat.Settings.load(
        env_file=None, index=str(index), embeddings={"provider": "hashing"}
    )
    asyncio.run(sitechat.ingest(str(SAMPLE_SITE), settings=settings))
    monkeypatch.setenv("SITECHAT_INDEX", str(index))  # the settings' embedder stays 'static'
    sidebar = page_text(start_app().sidebar)
    assert "embeddings: hashing" in sidebar
    assert "static" not in sidebar


def test_follow_up_keeps_the_conversation(offline_app: AppTest) -> None:
    """A second question adds to the conversation instead of replacing it."""
    at = ask(offline_app, "How do I delete my account?")
    at = ask(at, "How do I export my notes?")
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    assert "export" in at.chat_message[3].markdown[0].value.lower()


def test_suggestion_button_asks_it(offline_app: AppTest) -> None:
    """On an empty chat, an example question is one click away."""
    [button] = [b for b in offline_app.button if b.label == "Is there a trial?"]
    button.click().run()
    assert [m.name for m in offline_app.chat_message] == ["user", "assistant"]
    assert offline_app.chat_message[0].markdown[0].value == "Is there a trial?"


def test_new_chat_clears_the_conversation(offline_app: AppTest) -> None:
    """'New chat' forgets every message of this browser session."""
    at = ask(offline_app, "How do I delete my account?")
    [new_chat] = [b for b in at.sidebar.button if b.label == "New chat"]
    new_chat.click().run()
    assert not at.exception
    assert len(at.chat_message) == 0
    assert at.session_state["turns"] == []


def test_regenerate_replaces_the_last_answer(offline_app: AppTest) -> None:
    """Regenerate asks the last question again; the conversation does not grow."""
    at = ask(offline_app, "How do I delete my account?")
    at.button(key="regenerate").click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert "Deleting your account" in at.chat_message[1].markdown[0].value


def test_question_the_site_does_not_cover(offline_app: AppTest) -> None:
    """An off-topic question gets the 'not covered' notice and no sources."""
    at = ask(offline_app, "What is the boiling point of tungsten?")
    assistant = at.chat_message[1]
    text = page_text(assistant)
    assert "Not covered by this site" in text
    assert "**Sources**" not in text


def test_provider_failure_is_friendly_and_leaks_nothing(
    openai_server: OpenAICompatibleServer,
) -> None:
    """A rejected key shows a plain message and a reference, never the key or a traceback."""
    openai_server.script(OpenAIFaults.unauthorized())
    at = ask(start_app(), "How do I delete my account?")
    [error] = at.chat_message[1].error
    assert "rejected this app's credentials" in error.value
    text = page_text(at)
    assert "Reference for the server log" in text
    assert SECRET_KEY not in text
    assert SECRET_KEY[-6:] not in text
    assert "Traceback" not in text
    assert not at.exception


def test_rate_limit_keeps_the_partial_answer_out_of_history(
    openai_server: OpenAICompatibleServer,
) -> None:
    """A throttled answer says to wait; the next question is sent without the failed turn."""
    openai_server.script(OpenAIFaults.rate_limited(retry_after=0))
    at = ask(start_app(), "How do I delete my account?")
    assert "busy" in at.chat_message[1].error[0].value
    openai_server.script(Reply("Open Settings, then Account [1]."))
    at = ask(at, "And how do I export my notes?")
    assert at.chat_message[3].markdown[0].value.startswith("Open Settings, then Account")
    last_request = openai_server.requests[-1].json
    assert last_request is not None
    sent = [m["content"] for m in last_request["messages"] if m["role"] != "system"]
    assert not any("How do I delete my account?" in str(c) for c in sent[:-1])


def test_model_output_cannot_inject_html_images_or_scripts(
    openai_server: OpenAICompatibleServer,
) -> None:
    """HTML, images and non-web links written by the model are shown inert."""
    hostile = (
        "Sure <img src=x onerror=alert(1)> <script>alert(2)</script> "
        "![pixel](https://tracker.example/p.png?q=secret) "
        "[click me](javascript:alert(3)) [docs](https://docs.example.com/) [1]"
    )
    openai_server.script(Reply(hostile))
    at = ask(start_app(), "How do I delete my account?")
    shown = at.chat_message[1].markdown[0].value
    assert "<img" not in shown and "<script" not in shown
    assert "&lt;img" in shown
    assert "![" not in shown and "tracker.example" not in shown
    assert "javascript:" not in shown
    assert "[docs](https://docs.example.com/)" in shown


def test_missing_index_offers_to_build_the_sample(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With no index yet, one click builds it from the sample site and the chat opens."""
    index = tmp_path / "new-index"
    monkeypatch.setenv("SITECHAT_INDEX", str(index))
    at = start_app()
    assert "No index yet" in page_text(at) + "".join(s.value for s in at.subheader)
    assert len(at.chat_input) == 0
    [build] = [b for b in at.button if b.label == "Build the sample index"]
    build.click().run()
    assert not at.exception, at.exception
    assert index.exists()
    assert len(at.chat_input) == 1
    ask(at, "How do I delete my account?")
    assert "Deleting your account" in at.chat_message[1].markdown[0].value


@pytest.mark.parametrize(
    ("variable", "value", "page"),
    [
        ("SITECHAT_RETRIEVAL__TOP_K", "0", "pages/chat.py"),
        ("SITECHAT_RETRIEVAL__TOP_K", "0", "pages/ingest.py"),
        ("SITECHAT_LOG__LEVEL", "verbose", None),  # read by app.py, before any page
    ],
)
def test_a_bad_setting_shows_the_apps_own_message(
    monkeypatch: pytest.MonkeyPatch, sample_index: str, variable: str, value: str, page: str | None
) -> None:
    """A bad SITECHAT_* value gets "sitechat could not start", naming the variable, on
    every page: never Streamlit's generic error for an uncaught exception."""
    monkeypatch.setenv("SITECHAT_INDEX", sample_index)
    monkeypatch.setenv(variable, value)
    at = AppTest.from_file(str(APP), default_timeout=30)
    if page is not None:
        at.switch_page(page)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    [error] = at.error
    assert error.value.startswith("sitechat could not start:")
    assert variable.replace("_", "\\_") in error.value  # Markdown-escaped, shown as written
    assert len(at.chat_input) == 0 and len(at.button) == 0


def test_ingest_page_indexes_a_folder_and_shows_a_summary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The ingest page reads a folder, shows progress, then the pages and passages indexed."""
    index = tmp_path / "ingested"
    monkeypatch.setenv("SITECHAT_INDEX", str(index))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.switch_page("pages/ingest.py").run()
    at.segmented_control[0].set_value("Folder").run()
    assert at.text_input[0].value == str(SAMPLE_SITE)
    at.text_input[1].set_value("https://docs.lumen.example/")
    at.button[0].click().run()  # the form's Start button
    assert not at.exception, at.exception
    assert "Indexed 12 pages" in at.success[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pages"] == "12"
    assert int(metrics["Passages"]) > 50
    assert index.exists()


def test_ingest_page_refuses_a_non_web_address(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only http(s) sites can be crawled; anything else gets a plain explanation."""
    monkeypatch.setenv("SITECHAT_INDEX", str(tmp_path / "index"))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.switch_page("pages/ingest.py").run()
    at.text_input[0].set_value("file:///etc/")
    at.button[0].click().run()
    assert "http:// or https://" in at.error[0].value
    assert not (tmp_path / "index").exists()


def test_the_source_kind_cannot_be_cleared_to_skip_the_checks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Clicking the selected "Website" again keeps it selected, and a server folder typed
    as the website address is still refused as not http(s)."""
    monkeypatch.setenv("SITECHAT_INDEX", str(tmp_path / "index"))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.switch_page("pages/ingest.py").run()
    assert at.segmented_control[0].proto.required
    at.segmented_control[0].set_value(None).run()  # what a click on the selected option sends
    at.text_input[0].set_value(str(SAMPLE_SITE))
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "http:// or https://" in at.error[0].value
    assert not at.success and not (tmp_path / "index").exists()


def test_a_private_address_is_refused_pointing_to_the_checkbox(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without the checkbox a local server is refused, and the message names the checkbox,
    not a Python argument or a CLI flag the visitor cannot use."""
    monkeypatch.setenv("SITECHAT_INDEX", str(tmp_path / "index"))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.switch_page("pages/ingest.py").run()
    at.text_input[0].set_value("http://127.0.0.1:9/docs/")
    at.button[0].click().run()
    assert not at.exception, at.exception
    [error] = at.error
    assert "Refusing to fetch from" in error.value
    assert "Allow private network addresses" in error.value
    assert "allow\\_private" not in error.value and "CLI" not in error.value


def test_ingest_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, sample_index: str, tmp_path: Path
) -> None:
    """SITECHAT_APP_ALLOW_INGEST=false removes the page and the sample-index button."""
    monkeypatch.setenv("SITECHAT_APP_ALLOW_INGEST", "false")
    monkeypatch.setenv("SITECHAT_INDEX", str(tmp_path / "none"))
    at = start_app()
    assert not [b for b in at.button if b.label == "Build the sample index"]
    assert "turned off" in page_text(at)
    assert not (tmp_path / "none").exists()
