"""The offline extractive answerer: which sentences it quotes, and how it cites them."""

from __future__ import annotations

from sitechat.llm.extractive import ExtractiveLLMService

ACCOUNT = (
    1,
    "Account — Delete your account",
    "https://d/account.html#delete",
    "Deleting your account removes everything. Go to Settings → Account and click Delete "
    "account. During 30 days you can cancel the deletion by clicking Restore my account.",
)
NOTES = (
    2,
    "Getting started — Deleting and restoring notes",
    "https://d/start.html#notes",
    "Right-click a note and choose Delete: it moves to the Trash. To bring one back, open "
    "Trash, right-click it and choose Restore.",
)


def test_a_step_under_a_matching_title_beats_a_sentence_about_something_else() -> None:
    """'Delete a note' quotes the notes section, whose title names notes, first."""
    answer = ExtractiveLLMService().compose("How do I delete a note?", [ACCOUNT, NOTES])
    assert answer.index("Right-click a note") < answer.find("Settings → Account") % 10_000


def test_a_follow_up_takes_its_topic_from_the_earlier_question() -> None:
    """'And how do I undo that?' after deleting a note quotes how to restore one."""
    answer = ExtractiveLLMService().compose(
        "and how do I undo that?", [NOTES, ACCOUNT], context=["How do I delete a note?"]
    )
    assert "choose Restore. [2]" in answer


def test_a_sentence_must_share_a_word_with_the_question() -> None:
    """A title match alone never makes a sentence that says nothing asked about an answer."""
    source = (1, "Pricing and refunds", "https://d/p", "Our team is based in Lisbon.")
    answer = ExtractiveLLMService().compose("How do refunds work?", [source])
    assert answer.startswith("The closest passage I found")


async def test_the_section_heading_in_the_prompt_counts_like_the_title() -> None:
    """Through a real prompt, a step under "Install on Windows" answers installing on
    Windows, though the step itself says "Download the installer" (not "install")."""
    from sitechat.chat.prompts import build_messages
    from sitechat.models import Source

    windows = Source(
        1, "Guide", "https://d/install.html#windows", "", 0.9, heading="Install on Windows"
    )
    platforms = Source(
        2, "Overview", "https://d/index.html#platforms", "", 0.8, heading="Platforms"
    )
    texts = [
        "Download the Lumen setup file from the download page and run LumenSetup.exe.",
        "Lumen has native apps for Windows, macOS and Linux.",
    ]
    messages = build_messages("How do I install Lumen on Windows?", [windows, platforms], texts, [])
    answer = await ExtractiveLLMService().generate_response(messages)
    assert answer.startswith("Download the Lumen setup file"), answer
