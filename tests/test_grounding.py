"""The grounding checks done by code (assistant.grounding) and the marks they put in the answer
(assistant.rendering): pure functions, no database.

Passages are cut from the demo company's documents the way chunking cuts them (one section,
heading apart), so the sentences, tables and wrapped lines are the real ones.
"""

from __future__ import annotations

import itertools
import statistics
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from assistant.grounding import (
    Figure,
    Quote,
    excerpt_around,
    figure_supported,
    figures_in,
    figures_unsupported,
    quote_select,
)
from assistant.rendering import ALLOWED_TAGS, answer_html

DEMO = Path(__file__).resolve().parent.parent / "demo"


def demo(path: str) -> str:
    return (DEMO / path).read_text(encoding="utf-8")


def section(path: str, start: str, stop: str | None = None) -> str:
    """The text of a demo document from the line holding `start` up to the one holding `stop`."""
    text = demo(path)
    begin = text.index(start)
    begin = text.rfind("\n", 0, begin) + 1
    end = text.index(stop, begin + len(start)) if stop else len(text)
    return text[begin:end].strip()


HANDBOOK = "documents/company/employee-handbook.md"
TRAVEL = "sources/company/travel-policy.md"
DEALERS = "sources/sales/dealer-programme.md"
PRICING = "sources/sales/pricing-discount-policy.md"
BUDGET = "sources/finance/budget-process.md"
IT_SECURITY = "documents/company/it-security-basics.txt"
KEY_ACCOUNTS = "documents/sales/key-accounts.txt"

WORKING_TIME = section(HANDBOOK, "- The standard full-time", "## 3.")
ANNUAL_LEAVE = section(HANDBOOK, "Full-time employees receive", "## 4.")
BENEFITS = section(HANDBOOK, "| Benefit |", "## 7.")
HELP = section(HANDBOOK, "| Topic |")
HOTELS = section(TRAVEL, "Book hotels through the Travel Desk", "# 6.")
PER_DIEMS = section(TRAVEL, "Lumen pays meal allowances", "# 7.")
TIERS = section(DEALERS, "Dealers are assigned to one of four tiers", "# 3.")
KA_TABLE = section(KEY_ACCOUNTS, "Code          Account", "3. ACCOUNT NOTES")
KA_NOTES = section(KEY_ACCOUNTS, "Radkurier Rhein-Ruhr AG\n  Largest", "4. RULES")
INCIDENTS = section(IT_SECURITY, "Employees must report suspected", "8. CONTACT")
IT_CONTACT = section(IT_SECURITY, "IT Service Desk: extension")


def assert_exact(quote: Quote, passages: list[str]) -> None:
    assert passages[quote.source_index][quote.start : quote.end] == quote.text
    assert quote.text == quote.text.strip()


# --- quote_select ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "passages", "expected"),
    [
        ("How many days of annual leave do I get?", [WORKING_TIME, ANNUAL_LEAVE], "30 days"),
        ("What are the core hours on Fridays?", [ANNUAL_LEAVE, WORKING_TIME], "10:00 to 13:00"),
        ("How much does lunch in the canteen cost?", [HELP, BENEFITS], "EUR 4.50"),
        ("What is the maximum hotel rate per night in Munich?", [PER_DIEMS, HOTELS], "EUR 190"),
        ("Who is the owner of the Paketblitz account?", [KA_NOTES, KA_TABLE], "Malte Hansen"),
        ("When must a security incident be reported?", [IT_CONTACT, INCIDENTS], "1 hour"),
        ("How many Cargo C5 does the Radkurier framework cover?", [KA_NOTES, KA_TABLE], "1,140"),
        ("Which dealers belong to the Aurelian tier?", [TIERS], "EUR 900,000"),
        ("What is the phone extension of the IT Service Desk?", [BENEFITS, HELP], "4357"),
    ],
)
def test_the_quote_is_the_documents_own_sentence_that_answers(question, passages, expected):
    quote = quote_select(question=question, passages=passages)
    assert quote is not None
    assert_exact(quote, passages)
    assert expected in quote.text
    assert len(quote.text) <= 360


def test_a_table_row_is_quoted_alone_without_its_pipes():
    quote = quote_select(question="What is the hotel limit in Munich?", passages=[HOTELS])
    assert quote is not None and quote.text == "Munich, Hamburg, Frankfurt, Berlin | EUR 190"


def test_list_markers_and_headings_stay_outside_the_quote():
    passage = "## 2. Working time\n\n- The standard full-time working week is 38 hours."
    quote = quote_select(question="How long is the working week?", passages=[passage])
    assert quote is not None and quote.text == "The standard full-time working week is 38 hours."
    passage = "3. Remaining leave may be carried over until 31 March of the following year."
    quote = quote_select(question="Until when can leave be carried over?", passages=[passage])
    assert quote is not None and quote.text.startswith("Remaining leave")


def test_abbreviations_decimals_and_times_do_not_end_a_sentence():
    passage = (
        "Meals are reimbursed up to approx. EUR 4.50 per day, e.g. in the canteen of site no. 2. "
        "The canteen opens at 11.30 daily. Drinks are not reimbursed."
    )
    quote = quote_select(question="How much is reimbursed for meals?", passages=[passage])
    assert quote is not None
    assert quote.text == (
        "Meals are reimbursed up to approx. EUR 4.50 per day, e.g. in the canteen of site no. 2."
    )


def test_wrapped_lines_of_a_plain_text_document_are_one_sentence():
    quote = quote_select(
        question="How many units does the Radkurier framework agreement cover?",
        passages=[KA_NOTES, section(KEY_ACCOUNTS, "Radkurier Rhein-Ruhr AG (account code")],
    )
    assert quote is not None
    assert quote.text.startswith("Radkurier Rhein-Ruhr AG (account code KA-RRR-0419) has a")
    assert "framework\nagreement for 1,140 Lumen Cargo C5 units" in quote.text


def test_a_blank_line_inside_a_table_keeps_its_header():
    passage = (
        "Band | Typical roles | Minimum (EUR) | Midpoint (EUR) | Maximum (EUR)\n\n"
        "P2 | Bike mechanic, lab technician | 38,000 | 43,500 | 49,000\n"
        "P3 | Specialist, accountant | 46,000 | 53,000 | 60,000\n\n"
        "New hires are normally placed between the band minimum and the midpoint."
    )
    quote = quote_select(question="What is the midpoint of the P3 band?", passages=[passage])
    assert quote is not None
    assert quote.text == "P3 | Specialist, accountant | 46,000 | 53,000 | 60,000"
    # The excerpt of a row far from its header starts with the header row.
    start = passage.index("P3 |")
    excerpt = excerpt_around(passage, start, start + len(quote.text), max_chars=130)
    assert excerpt.startswith("Band | Typical roles") and quote.text in excerpt
    assert len(excerpt) <= 130
    # A table of another shape after a blank line has a header of its own.
    other = passage.replace("New hires", "Site | Opens\n\nLeipzig | 07:00\n\nNew hires")
    quote = quote_select(question="When does Leipzig open?", passages=[other])
    assert quote is not None and quote.text == "Leipzig | 07:00"
    start = other.index("Leipzig |")
    excerpt = excerpt_around(other, start, start + 15, max_chars=30)
    assert excerpt == "Site | Opens\n\nLeipzig | 07:00"


def test_a_typed_tables_wrapped_cell_stays_with_its_row():
    # A plain-text table as extraction keeps it: columns two spaces apart, indentation gone.
    passage = (
        "Date  Event\n"
        "----------------  ------------------------------\n"
        "10-14 November 2025  Interim audit (processes, internal\n"
        "controls, IT general controls)\n"
        "16 February-6 March 2026  Final audit fieldwork on site in Leipzig\n"
        "20 March 2026  Audit opinion and long-form audit report"
    )
    quote = quote_select(question="When is the final audit fieldwork?", passages=[passage])
    assert quote is not None
    assert quote.text == "16 February-6 March 2026  Final audit fieldwork on site in Leipzig"
    quote = quote_select(question="When is the interim audit?", passages=[passage])
    assert quote is not None and quote.text == (
        "10-14 November 2025  Interim audit (processes, internal\ncontrols, IT general controls)"
    )
    assert_exact(quote, [passage])


def test_a_sentence_with_the_figure_asked_for_is_preferred():
    passage = (
        "Parking at the Leipzig site is available to all employees. "
        "Parking at the Leipzig site costs EUR 2 per day."
    )
    quote = quote_select(question="How much is parking at the Leipzig site?", passages=[passage])
    assert quote is not None and quote.text == "Parking at the Leipzig site costs EUR 2 per day."
    passage = (
        "The works council meets in the Betriebsrat office. "
        "The works council meets on 3 March at 10:00."
    )
    quote = quote_select(question="When does the works council meet?", passages=[passage])
    assert quote is not None and quote.text == "The works council meets on 3 March at 10:00."


def test_earlier_passages_win_a_tie():
    sentence = "Frequent travellers can request a BahnCard 50 paid by Lumen."
    passages = ["Rental cars are the exception.", sentence, "Taxis are rare.", sentence]
    quote = quote_select(question="Who can request a BahnCard?", passages=passages)
    assert quote is not None and quote.source_index == 1


def test_the_next_sentence_joins_only_when_it_also_answers():
    passage = (
        "Core hours are 10:00 to 15:00 from Monday to Thursday. Outside core hours you organise "
        "your time with your team. Working time is recorded in Personio."
    )
    quote = quote_select(question="What are the core hours?", passages=[passage])
    assert quote is not None
    assert quote.text == (
        "Core hours are 10:00 to 15:00 from Monday to Thursday. Outside core hours you organise "
        "your time with your team."
    )
    single = quote_select(question="What are the core hours?", passages=[passage], max_sentences=1)
    assert (
        single is not None
        and single.text == "Core hours are 10:00 to 15:00 from Monday to Thursday."
    )
    short = quote_select(question="What are the core hours?", passages=[passage], max_chars=80)
    assert short is not None and short.text == single.text


def test_an_overlong_sentence_is_cut_to_max_chars_around_the_matching_words():
    filler = "with several clauses about unrelated matters, " * 12
    passage = f"This policy applies {filler}and the hotel limit in Munich is EUR 190 per night."
    quote = quote_select(question="What is the hotel limit in Munich?", passages=[passage])
    assert quote is not None and len(quote.text) <= 360
    assert_exact(quote, [passage])
    assert "Munich is EUR 190" in quote.text


@pytest.mark.parametrize(
    "question",
    ["What is the weather on Mars?", "What is it?", "", "How much is it?"],
)
def test_no_quote_when_no_sentence_shares_a_content_word(question):
    assert quote_select(question=question, passages=[ANNUAL_LEAVE, HOTELS]) is None


def test_no_quote_from_no_passages():
    assert quote_select(question="How many days of leave?", passages=[]) is None
    assert quote_select(question="How many days of leave?", passages=["", "  \n"]) is None


def test_quotes_are_exact_substrings_for_every_section_of_the_demo_documents():
    questions = [
        "How much does it cost?",
        "When is the deadline?",
        "Who approves discounts?",
        "How many dealers are there?",
        "What is the cycle code for the FY2026 budget?",
        "Which class may be booked for long train journeys?",
    ]
    paths = sorted((DEMO / "sources").rglob("*.md")) + sorted((DEMO / "documents").rglob("*.txt"))
    assert paths
    for path in paths:
        text = path.read_text(encoding="utf-8")
        passages = [p for p in text.split("\n#") if p.strip()]
        for question in questions:
            quote = quote_select(question=question, passages=passages)
            if quote is not None:
                assert_exact(quote, passages)
                assert not quote.text.startswith(("#", "|", "- ", "* "))


def chunks(text: str, words: int = 160) -> list[str]:
    """Paragraphs of `text` gathered into passages of about `words` words (about 200 tokens),
    as the indexer cuts them."""
    passages, current = [], []
    for paragraph in text.split("\n\n"):
        current.append(paragraph)
        if sum(len(p.split()) for p in current) >= words:
            passages.append("\n\n".join(current))
            current = []
    return passages


def test_quote_select_takes_under_5_ms_for_four_passages():
    passages = chunks(demo(HANDBOOK))[:2] + chunks(demo(TRAVEL))[2:4]
    assert len(passages) == 4 and all(150 <= len(p.split()) <= 300 for p in passages)
    questions = [
        "How much may a hotel night in Munich cost?",
        "How many days of annual leave do full-time employees get?",
        "When may first class be booked for a train journey?",
    ]
    timings = []
    for n in range(30):
        started = time.perf_counter()
        quote = quote_select(question=questions[n % 3], passages=passages)
        timings.append(time.perf_counter() - started)
        assert quote is not None
    assert statistics.median(timings) < 0.005


# --- excerpt_around ----------------------------------------------------------------------------

SENTENCES = [f"Sentence {w} is here and says {10 + n * 7} things." for n, w in enumerate("abcde")]
FIVE = " ".join(SENTENCES)


def test_the_excerpt_is_whole_sentences_around_the_span_grown_on_both_sides():
    start = FIVE.index(SENTENCES[2])
    end = start + len(SENTENCES[2])
    assert excerpt_around(FIVE, start, end, max_chars=len(SENTENCES[2])) == SENTENCES[2]
    three = " ".join(SENTENCES[1:4])
    assert excerpt_around(FIVE, start, end, max_chars=len(three)) == three
    # Room for one more sentence: the one before is taken first.
    assert excerpt_around(FIVE, start, end, max_chars=len(three) - 1) == " ".join(SENTENCES[1:3])
    assert excerpt_around(FIVE, start, end, max_chars=10_000) == FIVE


def test_the_excerpt_always_holds_the_span_exactly():
    passage = HOTELS
    quote = quote_select(question="What is the hotel limit in Amsterdam?", passages=[passage])
    assert quote is not None
    for max_chars in (10, 60, 200, 400, 5000):
        excerpt = excerpt_around(passage, quote.start, quote.end, max_chars=max_chars)
        # The passage's own text, after its table's header row when that is out of reach.
        header = "Location | Maximum rate per night\n"
        assert quote.text in excerpt and excerpt.removeprefix(header) in passage
        assert len(excerpt) <= max(max_chars, len(quote.text))
        assert len(excerpt) <= max(max_chars, len(quote.text))
    # Inside a sentence longer than the limit: words around the span, still within the limit.
    start = passage.index("EUR 150")
    excerpt = excerpt_around(passage, start, start + 7, max_chars=30)
    assert "EUR 150" in excerpt and len(excerpt) <= 30


def test_the_excerpt_of_an_empty_span_and_bad_offsets():
    assert excerpt_around(FIVE, 0, 0, max_chars=60) == SENTENCES[0]
    with pytest.raises(ValueError):
        excerpt_around(FIVE, 5, 2, max_chars=60)
    with pytest.raises(ValueError):
        excerpt_around(FIVE, 0, len(FIVE) + 1, max_chars=60)


# --- figures_in --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "figure", "kind", "key"),
    [
        ("Lunch costs EUR 4.50 there.", "EUR 4.50", "amount", "n:4.5"),
        ("Lunch costs €4,50 there.", "€4,50", "amount", "n:4.5"),
        ("Lunch costs 4.50 euros there.", "4.50 euros", "amount", "n:4.5"),
        ("Revenue is EUR 96.4 million.", "EUR 96.4 million", "amount", "n:96400000"),
        ("A target of EUR 2.60 m this year.", "EUR 2.60 m", "amount", "n:2600000"),
        ("The limit is 23.5% for fleet deals.", "23.5%", "percent", "p:23.5"),
        ("The limit is 23.5 per cent for fleets.", "23.5 per cent", "percent", "p:23.5"),
        ("Staff get fifteen percent off.", "fifteen percent", "percent", "p:15"),
        ("It expires on 31 March 2025.", "31 March 2025", "date", "d:2025-03-31"),
        ("It expires on March 31st.", "March 31st", "date", "dm:03-31"),
        ("It expires on 31.03. of each year.", "31.03.", "date", "dm:03-31"),
        ("It expires on 2025-03-31.", "2025-03-31", "date", "d:2025-03-31"),
        ("Talks start in June 2026.", "June 2026", "date", "m:2026-06"),
        ("The framework runs from 2025 on.", "2025", "date", "y:2025"),
        ("Core hours start at 10:00.", "10:00", "time", "t:10:00"),
        ("Core hours start at 10 a.m. sharp.", "10 a.m.", "time", "t:10:00"),
        ("Core hours end at 3 pm.", "3 pm", "time", "t:15:00"),
        ("The account KA-RRR-0419 is the largest.", "KA-RRR-0419", "code", "c:ka-rrr-0419"),
        ("Budgets go to PLAN-FY26-ALDER now.", "PLAN-FY26-ALDER", "code", "c:plan-fy26-alder"),
        ("The cargo bike Lumen Cargo C3 is new.", "C3", "code", "c:c3"),
        ("Write to people@lumen-mobility.de today.", "people@lumen-mobility.de", "code", None),
        ("The head is Jana Wolff.", "Jana Wolff", "name", "w:jana wolff"),
        ("Leave is thirty days.", "thirty", "number", "n:30"),
        ("It takes twenty-one days.", "twenty-one", "number", "n:21"),
        ("About two hundred and fifty bikes.", "two hundred and fifty", "number", "n:250"),
        ("A framework for 1,140 units.", "1,140", "number", "n:1140"),
        ("A framework for 1 140 units.", "1 140", "number", "n:1140"),
        ("Call +49 341 9928 110 at night.", "+49 341 9928 110", "number", "ph:493419928110"),
        ("Its code ka-rrr-0419 is lower case.", "ka-rrr-0419", "code", "c:ka-rrr-0419"),
        ("The target is EUR 1.10.", "EUR 1.10", "amount", "n:1.1"),
        ("A 24-hour hotline.", "24", "number", "n:24"),
    ],
)
def test_figures_are_found_with_their_kind_and_normalised_keys(text, figure, kind, key):
    found = [f for f in figures_in(text) if f.text == figure]
    assert len(found) == 1, figures_in(text)
    assert found[0].kind == kind and text[found[0].start : found[0].end] == figure
    assert key is None or key in found[0].keys


def test_citations_list_numbers_links_and_digits_of_codes_are_not_figures():
    text = (
        "1. Book the hotel [1].\n2. Claim the costs [2, 3] in section 8.\n"
        "See [the policy](/documents/4/#chunk-12) and ADR-0009."
    )
    assert [(f.text, f.kind) for f in figures_in(text)] == [("ADR-0009", "code")]


def test_ordinary_capitalised_words_are_not_names():
    text = (
        "However, employees get 30 days. Yes, I think so. Unfortunately the Travel Desk is "
        "closed on Friday and in December; Counsel cannot help.\n\n| Item | Cost |\n|---|---|\n"
        "| Hotel | EUR 190 |"
    )
    names = [f.text for f in figures_in(text) if f.kind == "name"]
    assert names == ["Travel Desk"]


def test_figures_are_in_order_and_never_overlap():
    text = "On 2 and 4 September 2025 from 10:00, EUR 4.50 and 23.5% for KA-RRR-0419 [1]."
    figures = figures_in(text)
    assert [f.text for f in figures] == [
        "2", "4 September 2025", "10:00", "EUR 4.50", "23.5%", "KA-RRR-0419",
    ]  # fmt: skip
    assert figures[0].kind == "date" and "d:2025-09-02" in figures[0].keys
    assert all(a.end <= b.start for a, b in itertools.pairwise(figures))
    assert all(isinstance(f, Figure) and text[f.start : f.end] == f.text for f in figures)


# --- figures_unsupported: what people write for the same thing ---------------------------------


@pytest.mark.parametrize(
    ("answer", "source"),
    [
        ("Lunch costs €4.50.", "Subsidised lunch for EUR 4.50"),
        ("Lunch costs 4,50 euros.", "Subsidised lunch for EUR 4.50"),
        ("Lunch costs EUR 4.50.", "Subsidised lunch for 4.50 euros"),
        ("A framework for 1200 units.", "A framework for 1,200 units"),
        ("A framework for 1.200 units.", "A framework for 1,200 units"),
        ("A framework for 1 200 units.", "A framework for 1200 units"),
        ("A framework for 1,200 units.", "A framework for 1.200 units"),
        ("Approval takes 3 working days.", "approved within three working days"),
        ("Approval takes three working days.", "approved within 3 working days"),
        ("Apply twenty-one days ahead.", "requested at least 21 days before departure"),
        ("There are two hundred bikes.", "a fleet of 200 bikes"),
        ("Above five thousand euros.", "Credit note above EUR 5,000"),
        ("Revenue is EUR 2.6 million.", "Target 2025 EUR 2.60 m"),
        ("The limit is 23.5 percent.", "No discount above 23.5% may be granted"),
        ("The limit is 23.5 per cent.", "No discount above 23.5% may be granted"),
        ("Staff get 15% off.", "Staff discount | 15 % off accessories"),
        ("It expires on 31 March.", "carried over until 31 March 2025"),
        ("It expires on March 31.", "carried over until 31 March"),
        ("It expires on 31.03.", "carried over until 31 March"),
        ("It expires on 2025-03-31.", "carried over until 31 March 2025"),
        ("It expires on 31 March 2025.", "carried over until 2025-03-31"),
        ("It expires on the 31st of March.", "carried over until 31 March"),
        ("It expires on 31 March 2025.", "Calendar 2025. Leave is carried over until 31 March."),
        ("Training is on 2 September.", "training sessions take place on 2 and 4 September"),
        ("Core hours start at 10:00.", "Core hours are 10.00 to 15.00"),
        ("Core hours are 10.00 to 15.00.", "Core hours are 10:00 to 15:00"),
        ("Core hours start at 10 am.", "Core hours are 10:00 to 15:00"),
        ("Core hours start at 10 a.m.", "Core hours are 10:00 to 15:00"),
        ("Core hours end at 3 pm.", "Core hours are 10:00 to 15:00"),
        ("The account is ka-rrr-0419.", "Radkurier (account code KA-RRR-0419)"),
        ("Use the cycle FY26.", "under the cycle code PLAN-FY26-ALDER"),
        ("It is the 2026 budget.", "Budgets for FY2026 are due"),
        ("The plan runs until 2027.", "from 2025 to 2027"),
        ("Call +49 341 9928 110.", "the hotline +49 (341) 9928-110"),
        ("Ask the Travel Desk.", "the travel desk books rail and flights"),
        (
            "See the Business Travel Policy.",
            "This travel policy sets out how business trips are approved",
        ),
        ("Dealers in the Aurelian tier.", "AURELIAN is the highest tier"),
        ("The third day needs a note.", "From the 3rd calendar day you need a certificate"),
        ("The 3rd day needs a note.", "From the third calendar day you need a certificate"),
        ("A 70/30 split of base and variable pay.", "split 70 % base salary and 30 % variable"),
        ("Leave: 30 days.\n\n| City | Rate |\n|---|---|\n| Munich | €190 |", HOTELS + ANNUAL_LEAVE),
    ],
)
def test_a_figure_written_differently_is_still_supported(answer, source):
    assert figures_unsupported(answer=answer, sources=[source]) == []


@pytest.mark.parametrize(
    ("answer", "source"),
    [
        ("You get thirty days of vacation per year [1].", ANNUAL_LEAVE),
        (
            "Core hours are 10 am to 3 pm from Monday to Thursday, and until 1 pm on Fridays [1].",
            WORKING_TIME,
        ),
        ("Remaining leave can be carried over until March 31 of the following year.", ANNUAL_LEAVE),
        ("The hotel limit in Munich is €190 per night; elsewhere in Germany €150 [1].", HOTELS),
        ("Aurelian dealers need annual net purchases of at least EUR 900,000.", TIERS),
        (
            "Discounts above 23.5 percent need the written approval of the VP Sales.",
            demo(PRICING),
        ),
        (
            "Submit the FY2026 budget in the planning tool under PLAN-FY26-ALDER; access is "
            "granted by 29 August.",
            demo(BUDGET),
        ),
        ("Report it within one hour to the IT Service Desk (extension 4357).", INCIDENTS),
        (
            "Radkurier Rhein-Ruhr AG (KA-RRR-0419) takes 1140 Lumen Cargo C5 from 2025 to 2027, "
            "380 of them in 2025.",
            section(KEY_ACCOUNTS, "Radkurier Rhein-Ruhr AG (account code"),
        ),
        ("For a day trip of more than eight hours you get EUR 14.", PER_DIEMS),
        ("Lumen pays **EUR 29** a month towards the Deutschlandticket.", BENEFITS),
        ("Unfortunately, I could not find that in the documents.", HOTELS),
    ],
)
def test_a_correct_paraphrase_gets_no_marks(answer, source):
    assert figures_unsupported(answer=answer, sources=[source]) == []


@pytest.mark.parametrize(
    ("answer", "source", "invented"),
    [
        ("The hotel limit in Munich is EUR 14 per night.", HOTELS, ["EUR 14"]),
        ("Call the IT Service Desk on extension 7.", HELP, ["7"]),
        ("The head of key accounts is Jana Weber.", KA_NOTES + "\n" + KA_TABLE, ["Jana Weber"]),
        ("Only Platinum dealers need EUR 900,000.", TIERS, ["Platinum"]),
        ("The account code is KA-RRR-0420.", KA_TABLE, ["KA-RRR-0420"]),
        ("Discounts above 25% need the VP Sales.", demo(PRICING), ["25%"]),
        ("Leave expires on 30 April.", ANNUAL_LEAVE, ["30 April"]),
        ("Leave expires on 31 March 2026.", "carried over until 31 March 2025", ["31 March 2026"]),
        ("Core hours start at 9:00.", WORKING_TIME, ["9:00"]),
        ("You get thirty-five days of leave.", ANNUAL_LEAVE, ["thirty-five"]),
        (
            "Munich costs EUR 191 [1] and Amsterdam EUR 190, Oslo EUR 151.",
            HOTELS,
            ["EUR 191", "Oslo", "EUR 151"],
        ),
    ],
)
def test_invented_figures_are_caught_in_answer_order(answer, source, invented):
    found = figures_unsupported(answer=answer, sources=[source])
    assert [f.text for f in found] == invented
    assert all(answer[f.start : f.end] == f.text for f in found)


def test_figures_the_asker_wrote_are_supported():
    answer = "For 3 nights in Munich at EUR 190 you pay EUR 570; Jana Weber is not listed."
    question = "What do 3 nights in Munich cost? Is Jana Weber the right contact?"
    found = figures_unsupported(answer=answer, sources=[HOTELS], question=question)
    assert [f.text for f in found] == ["EUR 570"]  # arithmetic is not in the sources either


def test_one_figure_is_looked_up_source_by_source():
    figure = next(f for f in figures_in("The limit is €190 in Munich.") if f.kind == "amount")
    assert figure_supported(figure, sources=[HOTELS])
    assert not figure_supported(figure, sources=[PER_DIEMS])
    assert figure_supported(figure, sources=[PER_DIEMS], question="Is it 190 euros?")


# --- the marks in the rendered answer ----------------------------------------------------------

MARK = '<mark class="unsupported" title="Not in the sources">'
NOTE = ' <span class="unsupported-note">(not in the sources)</span>'


def tags(html: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    found: list = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_unsupported_figures_are_marked_with_a_note():
    answer = "The hotel limit in **Munich** is EUR 14 per night [1]."
    spans = [(f.start, f.end) for f in figures_unsupported(answer=answer, sources=[HOTELS])]
    assert spans == [(answer.index("EUR 14"), answer.index("EUR 14") + 6)]
    html = answer_html(answer, unsupported=spans)
    assert f"{MARK}EUR 14</mark>{NOTE} per night [1]." in html
    assert "<strong>Munich</strong>" in html


def test_marks_work_in_markdown_structures():
    answer = "- **EUR 14** a night\n\n| City | Rate |\n|---|---|\n| Oslo | 23.5% |"
    spans = [(f.start, f.end) for f in figures_in(answer) if f.kind != "name"]
    html = answer_html(answer, unsupported=spans)
    assert f"<li><strong>{MARK}EUR 14</mark>{NOTE}</strong> a night</li>" in html
    assert f"<td>{MARK}23.5%</mark>{NOTE}</td>" in html


@pytest.mark.parametrize(
    "text",
    [
        "**Leave**: 30 days [1].\n\n- one\n- two\n\n[policy](/documents/4/#chunk-2)",
        "Before <script>window.__pwned=1</script> after",
        "x \ue000EUR 14\ue001 y <mark>z</mark>",
        "",
    ],
)
def test_without_spans_the_answer_renders_as_before(text):
    assert answer_html(text) == answer_html(text, unsupported=())
    assert "<mark" not in answer_html(text)


def test_the_model_cannot_forge_a_mark():
    text = (
        'Pay \ue000EUR 14\ue001 or <mark class="unsupported" title="x">EUR 15</mark> or '
        '<span class="unsupported-note">y</span> and EUR 16.'
    )
    start = text.index("EUR 16")
    html = answer_html(text, unsupported=[(start, start + 6)])
    assert html.count("<mark") == 1 and html.count("<span") == 1
    assert f"{MARK}EUR 16</mark>{NOTE}" in html
    assert "\ue000" not in html and "\ue001" not in html
    assert "&lt;mark" in html  # the model's own tag stays visible text
    for tag, attrs in tags(html):
        assert tag in ALLOWED_TAGS | {"mark", "span"}
        if tag == "mark":
            assert attrs == [("class", "unsupported"), ("title", "Not in the sources")]
        if tag == "span":
            assert attrs == [("class", "unsupported-note")]


def test_hostile_markup_around_a_mark_stays_inert():
    text = '<img src=x onerror="alert(1)"> costs EUR 14 <a href="javascript:x">go</a>'
    start = text.index("EUR 14")
    html = answer_html(text, unsupported=[(start, start + 6)])
    assert {tag for tag, _ in tags(html)} <= ALLOWED_TAGS | {"mark", "span"}
    assert "<img" not in html and "<a " not in html
    assert f"{MARK}EUR 14</mark>{NOTE}" in html


def test_odd_spans_are_clipped_or_skipped_never_break_the_markup():
    text = "Costs EUR 14, see [policy 14](/documents/14/)."
    start = text.index("EUR 14")
    inside_link = text.index("/documents/14/") + 11
    html = answer_html(
        text,
        unsupported=[(start, start + 6), (start + 2, start + 5), (inside_link, inside_link + 2),
                     (-5, 2), (len(text) - 1, len(text) + 40), (3, 3)],
    )  # fmt: skip
    assert f"{MARK}EUR 14</mark>{NOTE}" in html
    assert 'href="/documents/14/"' in html
    assert html.count("<mark") == 3  # EUR 14, the clipped "Co" and the final "."


def test_an_amount_is_not_supported_by_a_percentage_nor_thousands_by_a_decimal():
    # Both were found by bench/answers.py: a made-up "EUR 23.50" passed against "23.5%", and a
    # made-up "$3,500" against "3.5 %" (3,500 was also read as 3.5).
    assert [
        f.text
        for f in figures_unsupported(
            answer="The list-price cap is EUR 23.50.", sources=["No discount above 23.5%."]
        )
    ] == ["EUR 23.50"]
    assert [
        f.text
        for f in figures_unsupported(
            answer="A raise between $2,500 and $3,500.", sources=["A raise of 2.5 to 3.5 %."]
        )
    ] == ["$2,500", "$3,500"]
    # The plain-number reading of a percentage still holds, and German decimals too.
    assert figures_unsupported(answer="A 70/30 split.", sources=["70 % base, 30 % variable"]) == []
    assert figures_unsupported(answer="It costs 4.50 euros.", sources=["Preis: EUR 4,50"]) == []


def test_an_identifier_holds_no_number():
    # A random adapter name in a FAKE answer had "020" marked inside "ap-020d79dafbac-v1".
    assert figures_in("Adapter: ap-020d79dafbac-v1.") == []
    assert [f.text for f in figures_in("The LB-560 pack, a 5-day week.")] == ["LB-560", "5"]
