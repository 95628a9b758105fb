"""The offline extractive answerer: which sentences it quotes, and how it cites them."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

import sitechat
from sitechat._text import split_sentences
from sitechat.chat.prompts import build_messages
from sitechat.config import Settings
from sitechat.llm.extractive import ExtractiveLLMService, answer_units
from sitechat.models import Source

SAMPLE_SITE = Path(__file__).resolve().parents[2] / "examples" / "sample_site"

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


async def _ask(site: Path, index: Path, question: str) -> str:
    settings = Settings.load(env_file=None, index=str(index))
    await sitechat.ingest(str(site), settings=settings)
    chat = await sitechat.open_chat(settings=settings)
    try:
        return await chat.process_message(question, [])
    finally:
        await chat.aclose()


async def test_a_sentence_under_a_heading_naming_the_question_is_quoted_first(
    tmp_path: Path,
) -> None:
    """Ingested and asked for real, the Windows step (under "Install › Windows", holding
    none of the question's words) is quoted before the Linux one, which shares "install"."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "install.html").write_text(
        "<html><head><title>Install</title></head><body><main><h1>Install</h1>"
        "<h2>Linux</h2><p>Run apt install foo.</p>"
        "<h2>Windows</h2><p>Download the installer and double-click it.</p></main></body></html>"
    )
    (site / "index.html").write_text(
        "<html><head><title>Foo</title></head><body><main><h1>Foo</h1><p>Foo is a tool. "
        'See the <a href="install.html">install guide</a>.</p></main></body></html>'
    )
    answer = await _ask(site, tmp_path / "index", "how do I install on Windows")
    assert answer.startswith("Download the installer and double-click it."), answer


def test_a_heading_makes_a_sentence_eligible_only_with_the_whole_question_around_it() -> None:
    """A heading sharing one word ("paying") with "Can I pay with bitcoin?" does not make
    the sentences under it answers: their headings and title hold no "bitcoin"."""
    sources = [
        (1, "Billing", "https://d/billing#pay", "We accept Visa and PayPal; you pay monthly."),
        (2, "FAQ", "https://d/faq#stop", "Nothing is deleted. Your account moves to Free."),
    ]
    sections = ["Billing › Payment methods", "FAQ › What happens if I stop paying?"]
    answer = ExtractiveLLMService().compose("Can I pay with bitcoin?", sources, sections=sections)
    assert "Nothing is deleted" not in answer, answer


PRICES = (
    1,
    "Plans, pricing and billing — Plans compared",
    "https://d/billing.html#plans",
    "Prices are in US dollars.\n\n"
    " | Free | Plus | Team\n"
    "Price, billed monthly | $0 | $6 per month | $12 per member per month\n"
    "Storage | 500 MB | 20 GB | 100 GB per member\n"
    "Encrypted vaults | — | Yes | Yes",
)


def test_a_table_row_is_quoted_with_its_header_and_the_column_asked_about() -> None:
    """'What does the Team plan cost?' quotes the price row, labelled, Team column only."""
    answer = ExtractiveLLMService().compose("What does the Team plan cost?", [PRICES])
    assert "Price, billed monthly — Team: $12 per member per month." in answer, answer
    assert "$6 per month" not in answer


BILLING_LEAD = (
    1,
    "Plans, pricing and billing",
    "https://d/billing.html",
    "Lumen Notes is free for personal use. Paid plans add storage and team features. This "
    "page lists what each plan costs, how payments work, and when you get your money back.",
)
TRIAL = (
    2,
    "Plans, pricing and billing — Trying Plus or Team before paying",
    "https://d/billing.html#free-trial",
    "Every account can start one 14-day trial of Plus or Team without entering a card.",
)


def test_the_cell_asked_for_beats_a_lead_that_says_what_the_page_lists() -> None:
    """The Team plan's cost is quoted from the price row's Team cell first, not from the
    lead sentence about the page ("This page lists what each plan costs…"), though that
    one holds "plan" and "cost" and the row only "Team" and "Price"."""
    prices = (3, *PRICES[1:])
    answer = ExtractiveLLMService().compose(
        "How much does the Team plan cost?", [BILLING_LEAD, TRIAL, prices]
    )
    assert answer.startswith("Price, billed monthly — Team: $12 per member per month."), answer
    assert "This page lists" not in answer


RESTORED = "Deleted notes can be restored from the Trash."
KEPT = "Notes you delete stay in the Trash for 30 days."


def test_a_how_long_question_prefers_the_sentence_with_the_number() -> None:
    """A "how long" question is answered by an amount: the sentence saying "30 days" leads,
    though the better-ranked source's sentence holds more of the question's words."""
    faq = (1, "FAQ — Can I recover a deleted note?", "https://d/faq.html#recover", RESTORED)
    trash = (2, "Getting started — The Trash", "https://d/start.html#trash", KEPT)
    answer = ExtractiveLLMService().compose(
        "How long are deleted notes kept in the Trash?", [faq, trash]
    )
    assert answer.startswith("Notes you delete stay in the Trash for 30 days. [2]"), answer


async def test_the_sample_sites_team_price_is_quoted_from_its_table(tmp_path: Path) -> None:
    """Asked for real on the bundled sample site, the Team plan's cost is answered with the
    price table's Team cells, not the billing page's lead paragraph."""
    answer = await _ask(SAMPLE_SITE, tmp_path / "index", "How much does the Team plan cost?")
    assert answer.startswith("Price, billed monthly — Team: $12 per member per month."), answer
    assert "This page lists" not in answer


def test_a_row_names_every_filled_column_when_the_question_names_none() -> None:
    """Without a column in the question a row keeps all its values; empty cells are left out."""
    units = answer_units(PRICES[3])
    assert units[0] == "Prices are in US dollars."
    assert "Storage — Free: 500 MB; Plus: 20 GB; Team: 100 GB per member." in units
    assert "Encrypted vaults — Plus: Yes; Team: Yes." in units
    assert not any(unit.startswith(" | Free") for unit in units)  # the header is no answer


def test_a_table_with_a_header_in_every_column_keeps_each_rows_label() -> None:
    """With a heading over the first column too ("Plan"), that column still labels each
    row, also when the question picks another column; one full stop ends a row."""
    text = (
        "Plan | Monthly price | Storage\n"
        "Starter | $5 per member | 2 GB\n"
        "Business | $25 per member. | 100 GB"
    )
    assert answer_units(text) == [
        "Starter — Monthly price: $5 per member; Storage: 2 GB.",
        "Business — Monthly price: $25 per member; Storage: 100 GB.",
    ]
    assert answer_units(text, {"storag"}) == [
        "Starter — Storage: 2 GB.",
        "Business — Storage: 100 GB.",
    ]


def test_lines_with_bars_inside_a_code_fence_are_not_a_table() -> None:
    """Shell pipes in a fenced example stay code: no table rows are made of them."""
    text = "Count them:\n```\nls | wc -l\ncat x | sort\n```"
    assert not any("—" in unit or ": " in unit for unit in answer_units(text))
    assert "ls | wc -l" in " ".join(answer_units(text))


@given(st.text(alphabet=st.characters(blacklist_characters="|"), max_size=300))
def test_text_without_a_table_splits_as_sentences(text: str) -> None:
    """Prose with no table splits exactly as it always did."""
    assert answer_units(text) == split_sentences(text)
