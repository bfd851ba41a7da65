"""Question-answer pairs from a profile's documents: pure functions, no database, no model.

Rule-based, from the text alone (the embedded model is too small to write good questions):

- every sentence or list item that states a fact becomes one answer, verbatim (markdown removed);
- its kind decides how it is asked: a figure (amounts, percentages, dates, times, counts), a
  definition ("**Term:** …", "X is the …"), a policy statement (must, may not, only, …), or a
  plain statement under a heading;
- the question names the document and the heading and lists the sentence's content words; the
  *key* is what a right answer must contain (the figure, else a distinctive word the question
  does not give away);
- for a share of the facts a second question in other words (another template, other word
  order) is kept out of training: the held-out split measures whether the adapter learnt the
  fact, not the wording;
- refusal examples teach it to say it does not know about topics outside the profile. They are
  generic off-topic questions: drawing them from other collections' documents would put those
  documents' words into this profile's adapter.

An optional ``rephrase`` callable (an LLM, see services) adds model-written questions.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

REFUSAL_ANSWER = "I don't have that information in the documents I was trained on."

OFF_TOPIC_QUESTIONS = (
    "What will the weather be like tomorrow?",
    "Who won the football world cup in 2014?",
    "Can you give me a recipe for lasagne?",
    "What is the capital of Australia?",
    "How do I change the oil in a car engine?",
    "What is the share price of our competitors today?",
    "Which films are showing in the cinema tonight?",
    "How many moons does Jupiter have?",
    "Write me a poem about the sea.",
    "What are the opening hours of the city library?",
    "Who is the current prime minister of Canada?",
    "How do I bake sourdough bread?",
    "What is the best programming language for games?",
    "Tell me about the history of the Roman Empire.",
    "What is the exchange rate of the Japanese yen?",
    "How tall is Mount Everest?",
)

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "this",
        "that",
        "these",
        "those",
        "it",
        "its",
        "they",
        "them",
        "their",
        "there",
        "here",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "his",
        "her",
        "i",
        "me",
        "my",
        "not",
        "no",
        "nor",
        "so",
        "than",
        "too",
        "very",
        "can",
        "could",
        "may",
        "might",
        "must",
        "shall",
        "should",
        "will",
        "would",
        "do",
        "does",
        "did",
        "done",
        "has",
        "have",
        "had",
        "having",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "after",
        "before",
        "between",
        "during",
        "per",
        "each",
        "every",
        "all",
        "any",
        "both",
        "either",
        "neither",
        "more",
        "most",
        "other",
        "some",
        "such",
        "only",
        "own",
        "same",
        "also",
        "just",
        "which",
        "who",
        "whom",
        "whose",
        "what",
        "when",
        "where",
        "why",
        "how",
        "up",
        "down",
        "out",
        "off",
        "again",
        "further",
        "once",
        "within",
        "without",
        "upon",
        "via",
        "including",
        "include",
        "includes",
        "etc",
        "e.g",
        "i.e",
    ]
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*|^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
_FIGURE = re.compile(
    r"(?:EUR|USD|CHF|€|\$)\s?\d[\d,.]*(?:\s?(?:million|m|k))?"
    r"|\d[\d,.]*\s?(?:%|percent|per cent)"
    r"|\b\d{1,2}:\d{2}\b"
    r"|\b\d{1,2}\s(?:January|February|March|April|May|June|July|August|September|October|"
    r"November|December)(?:\s\d{4})?"
    r"|\b[A-Z]{2,}[-\u2011][A-Z0-9-]{2,}\b"
    r"|\b\d[\d,.]*\s(?:days?|weeks?|months?|years?|hours?|minutes?|working days|km|kg|Wh|V|"
    r"cycles|units|employees|people|dealers)\b"
    r"|\b\d[\d,.]{2,}\b"
)
_DEFINITION = re.compile(r"^([A-Z][^:.]{1,60}):\s+\S")
_IS_DEFINITION = re.compile(r"^([A-Z][\w\- ]{2,50}?) (?:is|are|means) (?:the|a|an|our)\b")
_POLICY = re.compile(
    r"\b(must|must not|may not|may only|only|never|required|requires|not allowed|prohibited|"
    r"at least|at most|no later than|within)\b",
    re.IGNORECASE,
)
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019\\-]+")
_HEADING_NUMBER = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[A-Z]\.)\s+")

TRAIN_TEMPLATES = (
    "What does the {title} say about {words}?",
    "{topic}: what applies to {words}?",
    "What is the rule in the {title} on {words}?",
)
HELDOUT_TEMPLATES = (
    "According to our {title}, what do we know about {words}?",
    "Regarding {topic}, can you tell me about {words}?",
    "Under {topic}, what is stated regarding {words}?",
)


@dataclass(frozen=True)
class SourceDocument:
    document_id: int
    version: int
    title: str
    sections: Sequence[tuple[str, str]]  # (heading, text)


@dataclass(frozen=True)
class Fact:
    document_id: int
    version: int
    title: str
    topic: str
    text: str
    kind: str
    key: str
    words: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    split: str  # "train" | "heldout" | "probe"
    kind: str
    question: str
    answer: str
    key: str = ""
    document_id: int | None = None
    version: int | None = None


@dataclass
class Dataset:
    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)

    @property
    def documents(self) -> dict[int, int]:
        """Training examples per document id."""
        counts: dict[int, int] = {}
        for example in self.train:
            if example.document_id is not None:
                counts[example.document_id] = counts.get(example.document_id, 0) + 1
        return counts


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w%,.:€$-]+", " ", text.lower()).split())


def _clean(text: str) -> str:
    text = _MARKUP.sub("", text)
    text = text.replace("|", " ").replace("\u00a0", " ")
    return " ".join(text.split()).strip()


def _topic(heading: str, title: str) -> str:
    heading = _HEADING_NUMBER.sub("", _clean(heading.split(" > ")[-1] if heading else ""))
    return heading or title


def _sentences(text: str) -> Iterable[str]:
    for line in text.splitlines():
        line = _clean(line)
        if not line or line.startswith("---"):
            continue
        yield from (s.strip() for s in _SENTENCE.split(line) if s.strip())


def _content_words(text: str, *, exclude: str = "") -> list[str]:
    banned = {w.lower() for w in _WORD.findall(exclude)}
    seen: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower().strip("'\u2019-")
        if len(lower) < 3 or lower in _STOP or lower in banned or lower in seen:
            continue
        seen.append(lower)
    return seen


def _key_for(sentence: str, kind: str, question_words: Sequence[str]) -> str:
    figure = _FIGURE.search(sentence)
    if figure:
        return figure.group(0).strip(" .,")
    given = {w.lower() for w in question_words}
    proper = [
        w
        for i, w in enumerate(_WORD.findall(sentence))
        if i > 0 and w[0].isupper() and w.lower() not in given and w.lower() not in _STOP
    ]
    if proper:
        return proper[0]
    rest = [w for w in _content_words(sentence) if w not in given]
    return max(rest, key=len) if rest else ""


def extract_facts(document: SourceDocument) -> list[Fact]:
    """The fact-stating sentences of a document, each with its kind, key and question words."""
    facts: list[Fact] = []
    seen: set[str] = set()
    for heading, text in document.sections:
        topic = _topic(heading, document.title)
        for sentence in _sentences(text):
            words = sentence.split()
            if len(words) < 6 or len(words) > 60 or sentence.endswith("?"):
                continue
            norm = normalise(sentence)
            if norm in seen or normalise(document.title) == norm:
                continue
            seen.add(norm)
            if _FIGURE.search(sentence):
                kind = "number"
            elif _DEFINITION.match(sentence) or _IS_DEFINITION.match(sentence):
                kind = "definition"
            elif _POLICY.search(sentence):
                kind = "policy"
            else:
                kind = "statement"
            figure = _FIGURE.search(sentence)
            exclude = figure.group(0) if figure else ""
            content = _content_words(sentence, exclude=exclude)
            # Words of the title and topic add nothing to the question; keep the rest.
            framing = set(_content_words(document.title + " " + topic))
            question_words = [w for w in content if w not in framing][:5] or content[:5]
            if len(question_words) < 2:
                continue
            key = _key_for(sentence, kind, question_words)
            if not key or normalise(key) in {normalise(w) for w in question_words}:
                continue
            facts.append(
                Fact(
                    document_id=document.document_id,
                    version=document.version,
                    title=document.title,
                    topic=topic,
                    text=sentence,
                    kind=kind,
                    key=key,
                    words=tuple(question_words),
                )
            )
    return facts


def _words_phrase(words: Sequence[str]) -> str:
    words = list(words)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " and " + words[-1]


def ask(fact: Fact, *, heldout: bool, variant: int = 0) -> str:
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    template = templates[variant % len(templates)]
    words = list(fact.words)
    if heldout:
        # Other words in another order: the fact, not the wording, must be recalled.
        words = words[::-1][:4]
    question = template.format(title=fact.title, topic=fact.topic, words=_words_phrase(words))
    return question[0].upper() + question[1:]


_KIND_PRIORITY = {"number": 0, "definition": 1, "policy": 2, "statement": 3}


def _balanced(facts_by_document: list[list[Fact]], limit: int) -> list[Fact]:
    """Up to `limit` facts, taken round-robin over documents, best kinds first in each."""
    queues = [sorted(facts, key=lambda f: _KIND_PRIORITY[f.kind]) for facts in facts_by_document]
    chosen: list[Fact] = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


def build_dataset(
    documents: Sequence[SourceDocument],
    *,
    seed: str,
    max_examples: int,
    heldout_fraction: float,
    refusal_fraction: float = 0.1,
    rephrase: Callable[[Fact], str | None] | None = None,
) -> Dataset:
    """Training pairs and held-out paraphrases for one profile's documents (deterministic)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not secrets
    refusals = min(len(OFF_TOPIC_QUESTIONS), max(2, int(max_examples * refusal_fraction)))
    facts = _balanced([extract_facts(d) for d in documents], max(0, max_examples - refusals))
    heldout_ids = set(rng.sample(range(len(facts)), k=int(len(facts) * heldout_fraction)))
    dataset = Dataset()
    questions: set[str] = set()

    def add(split: str, fact: Fact, question: str) -> None:
        norm = normalise(question)
        if norm in questions:
            return
        questions.add(norm)
        target = dataset.train if split == "train" else dataset.heldout
        target.append(
            Example(
                split=split,
                kind=fact.kind,
                question=question,
                answer=fact.text,
                key=fact.key,
                document_id=fact.document_id,
                version=fact.version,
            )
        )

    for i, fact in enumerate(facts):
        add("train", fact, ask(fact, heldout=False, variant=i))
        if i in heldout_ids:
            add("heldout", fact, ask(fact, heldout=True, variant=i))
        if rephrase is not None:
            question = rephrase(fact)
            if question and fact.key.lower() not in question.lower():
                add("train", fact, question)
    for question in rng.sample(OFF_TOPIC_QUESTIONS, k=refusals):
        dataset.train.append(
            Example(split="train", kind="refusal", question=question, answer=REFUSAL_ANSWER)
        )
    rng.shuffle(dataset.train)
    return dataset


def leak_probe(
    foreign: Sequence[SourceDocument], *, own_text: str, limit: int, seed: str
) -> list[Example]:
    """Questions whose answers are facts of collections outside the profile.

    Only facts whose key appears nowhere in the profile's own text: if the adapter says it, it
    can only have come from the foreign documents (a canary).
    """
    own = own_text.lower()
    facts = [
        f
        for f in _balanced([extract_facts(d) for d in foreign], limit * 4)
        if len(f.key) >= 3 and f.key.lower() not in own
    ]
    random.Random(seed).shuffle(facts)  # noqa: S311 - reproducible
    facts.sort(key=lambda f: _KIND_PRIORITY[f.kind])  # figures first: the sharpest canaries
    return [
        Example(
            split="probe",
            kind=f.kind,
            question=ask(f, heldout=True, variant=i),
            answer=f.text,
            key=f.key,
            document_id=f.document_id,
            version=f.version,
        )
        for i, f in enumerate(facts[:limit])
    ]


def answer_contains(answer: str, key: str) -> bool:
    """Whether `answer` states `key` (case, spacing and thousands separators forgiven)."""
    if not key:
        return False

    def squash(text: str) -> str:
        return re.sub(r"[\s,\u00a0]", "", text.lower())

    return squash(key) in squash(answer)
