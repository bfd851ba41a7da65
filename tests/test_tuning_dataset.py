"""The rule-based training data: pure functions over text, no database and no model."""

from __future__ import annotations

import pytest

from tuning import dataset as ds

POLICY = ds.SourceDocument(
    document_id=1,
    version=3,
    title="Pricing Policy",
    sections=[
        (
            "Discount authority",
            "No discount above 23.5% may be granted without the written approval of the VP"
            " Sales.\nEvery potential order above EUR 5,000 is tracked as an opportunity.\n"
            "The Head of Dealer Development approves tier exceptions.\n"
            "Only Sales Operations may create fields, change page layouts or install apps.",
        ),
        ("Definitions", "**Floor price:** the lowest net unit price at which a model may be sold."),
        ("Price list", "Lumen City S2 EUR 2,899 EUR 1,608 EUR 1,125"),  # a table row
        ("Targets", "Regional targets are split by 31 January.\nreplacement bike within 48 hours"),
    ],
)


def facts_by_text() -> dict[str, ds.Fact]:
    return {f.text: f for f in ds.extract_facts(POLICY)}


@pytest.mark.parametrize(
    ("sentence", "kind", "key", "question"),
    [
        (
            "Every potential order above EUR 5,000 is tracked as an opportunity.",
            "number",
            "EUR 5,000",
            "Every potential order above how much is tracked as an opportunity?",
        ),
        (
            "No discount above 23.5% may be granted without the written approval of the VP Sales.",
            "number",
            "23.5%",
            "No discount above what percentage may be granted without the written approval of"
            " the VP Sales?",
        ),
        (
            "Regional targets are split by 31 January.",
            "number",
            "31 January",
            "Regional targets are split by what date?",
        ),
        (
            "The Head of Dealer Development approves tier exceptions.",
            "who",
            "Head of Dealer Development",
            "Who approves tier exceptions?",
        ),
        (
            "Only Sales Operations may create fields, change page layouts or install apps.",
            "who",
            "Sales Operations",
            "Who may create fields, change page layouts or install apps?",
        ),
        (
            "Floor price: the lowest net unit price at which a model may be sold.",
            "definition",
            "lowest",
            "What is meant by Floor price?",
        ),
    ],
)
def test_each_fact_is_asked_as_one_question_that_does_not_give_its_key_away(
    sentence, kind, key, question
):
    fact = facts_by_text()[sentence]
    assert (fact.kind, fact.key, fact.question) == (kind, key, question)
    assert (fact.document_id, fact.version, fact.topic) == (1, 3, fact.topic)
    assert not ds.answer_contains(fact.question, fact.key)


def test_table_rows_and_broken_lines_are_not_facts():
    texts = facts_by_text()
    assert not [t for t in texts if "Lumen City S2" in t]  # which of three prices?
    assert not [t for t in texts if t.startswith("replacement bike")]  # a line out of a paragraph


def test_held_out_questions_are_paraphrases_of_trained_facts_and_never_trained():
    documents = [POLICY]
    data = ds.build_dataset(documents, seed="s", max_examples=40, heldout_fraction=0.5)
    train_questions = {ds.normalise(e.question) for e in data.train}
    assert data.heldout
    for example in data.heldout:
        assert example.kind in ds.GRADABLE
        assert ds.normalise(example.question) not in train_questions
        # The fact itself is trained, under another wording.
        assert any(t.answer == example.answer for t in data.train if t.kind != "refusal")
    assert sum(e.kind == "refusal" for e in data.train) >= 2
    assert all(e.answer == ds.REFUSAL_ANSWER for e in data.train if e.kind == "refusal")
    # Deterministic for a seed: a restarted run builds the same set.
    again = ds.build_dataset(documents, seed="s", max_examples=40, heldout_fraction=0.5)
    assert again == data


def test_a_tight_budget_trains_fewer_facts_each_in_two_framings_not_more_facts_once():
    # Many documents, few pairs: the budget cannot hold every fact.
    places = [
        "Leipzig",
        "Dresden",
        "Berlin",
        "Hamburg",
        "Munich",
        "Cologne",
        "Vienna",
        "Graz",
        "Zurich",
        "Basel",
        "Bern",
        "Utrecht",
        "Antwerp",
        "Ghent",
        "Lyon",
        "Lille",
        "Porto",
        "Turin",
        "Milan",
        "Bremen",
        "Kiel",
        "Essen",
        "Bonn",
        "Mainz",
        "Ulm",
        "Trier",
        "Passau",
        "Linz",
        "Salzburg",
        "Bruges",
    ]
    documents = [
        ds.SourceDocument(
            document_id=n,
            version=1,
            title=f"{place} office",
            sections=[
                (
                    "Rules",
                    f"Every {place} order above EUR {n},500 is tracked as an opportunity.\n"
                    f"The Head of {place} approves {place} tier exceptions.\n"
                    f"Targets for {place} are split by the sales team every quarter.",
                )
            ],
        )
        for n, place in enumerate(places, start=1)
    ]
    data = ds.build_dataset(documents, seed="s", max_examples=40, heldout_fraction=0.2)
    assert len(data.train) <= 40
    trained = [e for e in data.train if e.kind in ds.GRADABLE]
    framings: dict[str, set[str]] = {}
    for example in trained:
        framings.setdefault(example.answer, set()).add(ds.normalise(example.question))
    assert trained and all(len(questions) == 2 for questions in framings.values())
    # Round-robin over the documents still: many documents get a fact, not the first few.
    assert len({e.document_id for e in trained}) >= 15


def test_the_paraphrase_changes_the_framing_and_common_words():
    fact = facts_by_text()["Every potential order above EUR 5,000 is tracked as an opportunity."]
    asked = {ds.ask(fact, heldout=True, variant=v) for v in range(3)}
    assert len(asked) == 3
    assert all("over how much" in q and q != fact.question for q in asked)


def test_the_leak_probe_asks_only_for_keys_the_profile_never_saw():
    own = "Orders above EUR 5,000 are tracked."
    probe = ds.leak_probe([POLICY], own_text=own, limit=10, seed="p")
    # Only sharp canaries: "23.5%" cannot be guessed; a round "31 January" can, and "EUR 5,000"
    # is the profile's own.
    assert {e.key for e in probe} == {"23.5%"}
    assert all(e.split == "probe" and e.kind == "number" for e in probe)
    assert ds.leak_probe([POLICY], own_text="Up to 23.5% off.", limit=10, seed="p") == []


def test_answer_contains_forgives_case_spacing_and_thousands_separators():
    assert ds.answer_contains("Orders over EUR 5000 are tracked.", "EUR 5,000")
    assert ds.answer_contains("above 23.5 % needs approval", "23.5%")
    assert not ds.answer_contains("above 25% needs approval", "23.5%")
    assert not ds.answer_contains("anything", "")


def test_model_written_questions_are_kept_only_when_they_ask_about_the_fact():
    written = {
        "Every potential order above EUR 5,000 is tracked as an opportunity.": (
            "Which potential orders are tracked as an opportunity?"
        ),
        "The Head of Dealer Development approves tier exceptions.": (
            "What's your business idea?"  # what the embedded 135M model wrote: off the subject
        ),
        "Regional targets are split by 31 January.": (
            "Are regional targets split by 31 January?"  # gives the key away
        ),
        "Floor price: the lowest net unit price at which a model may be sold.": None,
    }
    data = ds.build_dataset(
        [POLICY],
        seed="s",
        max_examples=40,
        heldout_fraction=0.0,
        rephrase=lambda fact: written.get(fact.text),
    )
    questions = {e.question for e in data.train}
    assert "Which potential orders are tracked as an opportunity?" in questions
    assert "What's your business idea?" not in questions
    assert "Are regional targets split by 31 January?" not in questions


def test_a_title_does_not_end_a_sentence():
    text = "The Compliance Officer is Dr. Helena Korte. The audit partner is Prof. Ralf Hollerbach."
    assert list(ds._sentences(text)) == [
        "The Compliance Officer is Dr. Helena Korte.",
        "The audit partner is Prof. Ralf Hollerbach.",
    ]
