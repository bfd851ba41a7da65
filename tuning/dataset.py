"""Question-answer pairs from a profile's documents: pure functions, no database, no model.

Rule-based, from the text alone (the embedded model is too small to write good questions). One
fact per question, asked the way a person would:

- every sentence or list item that states a fact becomes one answer, verbatim (markdown removed);
- a sentence with exactly one figure (an amount, a percentage, a date, a time, a count, a
  reference) is asked as an *echo question*: the figure is replaced by the matching question
  words ("Orders above EUR 5,000 must be tracked" → "Orders above how much must be tracked?");
  the figure is the *key*, what a right answer must contain;
- "The Head of Dealer Development approves tier exceptions." → "Who approves tier exceptions?"
  (key: the role or team that acts);
- a definition ("**Term:** …", "X is the …") → "What is meant by X?" (key: a distinctive word of
  the definition);
- other policy statements and plain statements are trained with a question naming the document
  and two of their content words, but never held out: their key would be a guess;
- for a share of the facts a *paraphrase* (other framing, other words for common terms) is kept
  out of training: the held-out split measures whether the adapter learnt the fact, not the
  wording. Sentences with several figures (table rows) are left out: without the column heads
  nobody could say which figure is asked for;
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

# A sentence ends at . ! or ? before a capital, a digit or an opening quote, but not after a
# title: "The Compliance Officer is Dr. Helena Korte." is one sentence (split there, it trained
# "Who is Dr?" -> "The Compliance Officer is Dr."). One lookbehind per title: Python's must each
# have a fixed width.
_TITLES = ("Dr", "Mr", "Mrs", "Ms", "Prof", "St", "Nr")
_SENTENCE = re.compile(
    "".join(rf"(?<!\b{t}\.)" for t in _TITLES) + r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])"
)
_MARKUP = re.compile(r"\*\*|__|`|^#+\s*|^\s*(?:[-*•]|\d+[.)])\s+", re.MULTILINE)
_UNITS = (
    r"working days|days?|weeks?|months?|years?|hours?|minutes?|km|kg|Wh|V|cycles|units|"
    r"employees|people|dealers"
)
_FIGURE = re.compile(
    r"(?P<money>(?:EUR|USD|CHF|€|\$)\s?\d[\d,.]*(?:\s?(?:million|m|k)\b)?)"
    r"|(?P<percent>\d[\d,.]*\s?(?:%|percent|per cent))"
    r"|(?P<time>\b\d{1,2}:\d{2}\b)"
    r"|(?P<date>\b\d{1,2}\s(?:January|February|March|April|May|June|July|August|September|"
    r"October|November|December)(?:\s\d{4})?)"
    r"|(?P<code>\b[A-Z]{2,}[-\u2011][A-Z0-9-]{2,}\b)"
    rf"|(?P<count>\b\d[\d,.]*\s(?P<unit>{_UNITS})\b)"
    r"|(?P<number>\b(?!(?:19|20)\d\d\b)\d[\d,.]{2,}\b)"  # not a bare year
)
_DEFINITION = re.compile(r"^([A-Z][^:.]{1,60}):\s+\S")
_IS_DEFINITION = re.compile(
    r"^(?:The |A |An )?([A-Z][\w\- ]{2,50}?) (?:is|are|means) (?:the|a|an|our)\b"
)
# "The Head of Dealer Development approves tier exceptions." - a capitalised actor, a verb.
_WHO = re.compile(
    r"^(?:The |Only (?:the )?)?"
    r"(?P<actor>[A-Z][\w&\-]*(?:\s+(?:of|for|and|&)?\s*[A-Z][\w&\-]*){0,5})\s+"
    r"(?P<verb>(?:must|may|can|shall|will)\s+(?:not\s+)?[a-z]+|[a-z]+s)\s+(?P<rest>.+?)[.;]?$"
)
# An actor is a role or a team: one of these words in it ("Sales Operations", "Head of …").
_ACTOR_WORDS = frozenset(
    [
        "head",
        "manager",
        "managers",
        "director",
        "officer",
        "operations",
        "finance",
        "hr",
        "sales",
        "team",
        "board",
        "committee",
        "department",
        "controller",
        "controlling",
        "lead",
        "owner",
        "academy",
        "engineering",
        "legal",
        "procurement",
        "purchasing",
        "council",
        "cfo",
        "ceo",
        "cto",
        "coo",
        "vp",
        "desk",
        "office",
        "support",
        "service",
        "management",
        "accounting",
        "payroll",
        "recruiting",
        "compliance",
        "security",
        "it",
    ]
)
# A fact is a whole sentence: a capital or a figure first, a full stop last (table rows and
# lines broken out of a PDF paragraph are not).
_WHOLE_SENTENCE = re.compile(r"^[A-Z0-9\"“(€$].*[.!)\"”]$")
_POLICY = re.compile(
    r"\b(must|must not|may not|may only|only|never|required|requires|not allowed|prohibited|"
    r"at least|at most|no later than|within)\b",
    re.IGNORECASE,
)
_WORD = re.compile("[A-Za-z][A-Za-z'\u2019\\-]+")
_HEADING_NUMBER = re.compile(r"^\s*(?:\d+(?:\.\d+)*\.?|[A-Z]\.)\s+")
_WH = {
    "money": "how much",
    "percent": "what percentage",
    "time": "what time",
    "date": "what date",
    "code": "which reference",
}
# Words swapped in a paraphrase: common terms only, so that the meaning stays the same.
_SYNONYMS = {
    "employees": "staff",
    "employee": "staff member",
    "above": "over",
    "below": "under",
    "within": "inside",
    "receive": "get",
    "receives": "gets",
    "requires": "needs",
    "require": "need",
    "approval": "sign-off",
    "approves": "signs off",
    "approve": "sign off",
    "customers": "clients",
    "customer": "client",
    "annual": "yearly",
    "monthly": "every month",
    "starts": "begins",
    "start": "begin",
    "granted": "given",
    "allowed": "permitted",
    "reviews": "checks",
    "reviewed": "checked",
    "submitted": "handed in",
    "submit": "hand in",
    "before": "prior to",
    "informed": "told",
    "purchases": "buys",
    "purchase": "buy",
}
_SYNONYM = re.compile(r"\b(" + "|".join(sorted(_SYNONYMS, key=len, reverse=True)) + r")\b", re.I)
HELDOUT_FRAMES = (
    "According to our {title}, {question}",
    "Quick question about {topic}: {question}",
    "{question} (I'm asking about the {title}.)",
)
TRAIN_FRAMES = ("{question}", "In the {title}: {question}")
# Kinds whose key is unambiguous enough to grade an answer by: the held-out split and the probe.
GRADABLE = frozenset(["number", "who", "definition"])


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
    kind: str  # number | who | definition | policy | statement
    key: str
    question: str  # the plain question this fact answers, without framing


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


def _distinctive(text: str, *, given: str) -> str:
    """A word of `text` that `given` does not contain: a name first, else the longest word."""
    banned = {w.lower() for w in _WORD.findall(given)}
    names = [
        w
        for i, w in enumerate(_WORD.findall(text))
        if i > 0 and w[0].isupper() and w.lower() not in banned and w.lower() not in _STOP
    ]
    if names:
        return names[0]
    rest = _content_words(text, exclude=given)
    return max(rest, key=len) if rest else ""


def _wh(figure: re.Match[str], after: str) -> str:
    kind = figure.lastgroup if figure.lastgroup != "unit" else "count"
    if kind in _WH:
        return _WH[kind]
    if kind == "count":
        return "how many " + figure.group("unit")
    # A bare number: a count when a plural noun follows ("1,150 MAGPIE pre-orders").
    following = after.split()[:2]
    plural = any(w.lower().rstrip(".,;").endswith("s") for w in following)
    return "how many" if plural else "what figure"


def _question(text: str) -> str:
    text = text.strip().rstrip(".;:, ")
    return text[0].upper() + text[1:] + "?"


def _echo(sentence: str, figure: re.Match[str]) -> str:
    """The sentence asked back with its figure replaced by question words."""
    before, after = sentence[: figure.start()], sentence[figure.end() :]
    return _question(f"{before}{_wh(figure, after)}{after}")


def _classify(sentence: str, title: str) -> tuple[str, str, str] | None:
    """(kind, key, plain question) for a fact-stating sentence, or None to skip it."""
    figures = {m.group(0).strip(" .,") for m in _FIGURE.finditer(sentence)}
    if len(figures) > 1:
        return None  # a table row or a comparison: which figure would be asked for?
    figure = _FIGURE.search(sentence)
    if figure:
        return "number", figure.group(0).strip(" .,"), _echo(sentence, figure)
    who = _WHO.match(sentence)
    if who:
        actor, verb, rest = who.group("actor", "verb", "rest")
        is_actor = {w.lower() for w in actor.split()} & _ACTOR_WORDS
        noun = verb.endswith("ss") or verb[:-1] in _ACTOR_WORDS  # "Department heads present …"
        if is_actor and not noun and rest.split()[0] not in {"are", "is", "was"}:
            return "who", actor, _question(f"Who {verb} {rest}")
    definition = _DEFINITION.match(sentence) or _IS_DEFINITION.match(sentence)
    if definition:
        term = definition.group(1).strip()
        meaning = sentence[definition.end(1) :]
        key = _distinctive(meaning, given=term)
        if key:
            return "definition", key, f"What is meant by {term}?"
        return None
    kind = "policy" if _POLICY.search(sentence) else "statement"
    words = _content_words(sentence, exclude=title)
    if len(words) < 2:
        return None
    key = _distinctive(sentence, given=" ".join(words[:2]))
    return kind, key, f"What does the {title} say about {words[0]} and {words[1]}?"


def extract_facts(document: SourceDocument) -> list[Fact]:
    """The fact-stating sentences of a document, each with its kind, key and question."""
    facts: list[Fact] = []
    seen: set[str] = set()
    for heading, text in document.sections:
        topic = _topic(heading, document.title)
        for sentence in _sentences(text):
            words = sentence.split()
            if len(words) < 5 or len(words) > 45 or not _WHOLE_SENTENCE.match(sentence):
                continue
            norm = normalise(sentence)
            if norm in seen or normalise(document.title) == norm:
                continue
            seen.add(norm)
            classified = _classify(sentence, document.title)
            if classified is None:
                continue
            kind, key, question = classified
            if not key or normalise(key) in normalise(question):
                continue  # the question must not give its answer away
            facts.append(
                Fact(
                    document_id=document.document_id,
                    version=document.version,
                    title=document.title,
                    topic=topic,
                    text=sentence,
                    kind=kind,
                    key=key,
                    question=question,
                )
            )
    return facts


def _swap_words(text: str) -> str:
    def swap(match: re.Match[str]) -> str:
        word = match.group(0)
        other = _SYNONYMS[word.lower()]
        return other[0].upper() + other[1:] if word[0].isupper() else other

    return _SYNONYM.sub(swap, text)


def _lower_first(question: str) -> str:
    first = question.split(" ", 1)[0]
    if first.lower() in _STOP or first.lower() in {"how", "what", "which", "who", "orders"}:
        return question[0].lower() + question[1:]
    return question


def ask(fact: Fact, *, heldout: bool, variant: int = 0) -> str:
    """The fact's question: as trained, or paraphrased (other framing, other common words)."""
    if not heldout:
        frame = TRAIN_FRAMES[variant % len(TRAIN_FRAMES)]
        question = fact.question
    else:
        frame = HELDOUT_FRAMES[variant % len(HELDOUT_FRAMES)]
        question = _swap_words(fact.question)
    if not frame.startswith("{question}"):
        question = _lower_first(question)
    text = frame.format(title=fact.title, topic=fact.topic, question=question)
    return text[0].upper() + text[1:]


_KIND_PRIORITY = {"number": 0, "who": 1, "definition": 2, "policy": 3, "statement": 4}


def _cost(fact: Fact) -> int:
    """Training pairs a chosen fact takes: a gradable one is trained in two framings."""
    return 2 if fact.kind in GRADABLE else 1


def _balanced(facts_by_document: list[list[Fact]], limit: int) -> list[Fact]:
    """Facts worth up to `limit` training pairs, round-robin over documents, best kinds first.

    A gradable fact counts for its two framings, so that a large profile whose facts do not all
    fit gets fewer facts learnt well rather than more facts each seen once (a 28-document
    profile trained on one framing each scored 10 % on held-out questions, against 40 % for
    12-document profiles that had room for two; docs/benchmarks.md, "Adapters").
    """
    queues = [sorted(facts, key=lambda f: _KIND_PRIORITY[f.kind]) for facts in facts_by_document]
    chosen: list[Fact] = []
    spent = 0
    while any(queues):
        for queue in queues:
            if queue and spent + _cost(queue[0]) <= limit:
                spent += _cost(queue[0])
                chosen.append(queue.pop(0))
            elif queue:
                queue.clear()  # this document's next fact does not fit: it is done
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
    """Training pairs and held-out paraphrases for one profile's documents (deterministic).

    Every chosen fact is trained once, and gradable facts a second time in another framing (the
    adapter learns the fact, not one sentence); the budget counts both. A share of
    the gradable facts is also asked in a paraphrase that is never trained: the held-out split.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible sampling, not secrets
    refusals = min(len(OFF_TOPIC_QUESTIONS), max(2, int(max_examples * refusal_fraction)))
    budget = max(0, max_examples - refusals)
    facts = _balanced([extract_facts(d) for d in documents], budget)
    gradable = [i for i, f in enumerate(facts) if f.kind in GRADABLE]
    heldout_ids = set(
        rng.sample(gradable, k=min(len(gradable), round(len(facts) * heldout_fraction)))
    )
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

    # Held-out paraphrases first, so that no training question can take their wording.
    for i in sorted(heldout_ids):
        add("heldout", facts[i], ask(facts[i], heldout=True, variant=i))
    for fact in facts:
        add("train", fact, ask(fact, heldout=False))
    for i in gradable:  # the second framing the budget reserved for them
        add("train", facts[i], ask(facts[i], heldout=False, variant=1))
    if rephrase is not None:
        for fact in facts:
            question = rephrase(fact)
            if question and model_question_fits(question, fact):
                add("train", fact, question)
    for question in rng.sample(OFF_TOPIC_QUESTIONS, k=refusals):
        dataset.train.append(
            Example(split="train", kind="refusal", question=question, answer=REFUSAL_ANSWER)
        )
    rng.shuffle(dataset.train)
    return dataset


def model_question_fits(question: str, fact: Fact) -> bool:
    """Whether a model-written question asks about `fact`: a question, about its subject (half
    of its content words, at least two, or all of a short one's), without giving the key away.
    Small models write friendly nonsense ("What's your business idea?"); this keeps it out.
    """
    question = " ".join(question.split())
    if not question.endswith("?") or not 3 <= len(question.split()) <= 30:
        return False
    if answer_contains(question, fact.key):
        return False
    subject = set(_content_words(fact.text, exclude=fact.key))
    shared = subject & set(_content_words(question))
    return len(shared) >= min(2, len(subject)) and len(shared) * 2 >= min(len(subject), 6)


def sharp_canary(fact: Fact) -> bool:
    """Whether saying `fact`'s key proves knowing it: a reference code, or a figure with three
    significant digits or more ("EUR 14.38 million", "312 dealers", "23.5%"). Round figures
    ("15 minutes", "30 days", "EUR 900,000") are what any model says when it makes one up.
    """
    if fact.kind != "number":
        return False
    if _FIGURE.fullmatch(fact.key) and _FIGURE.fullmatch(fact.key).lastgroup == "code":
        return True
    digits = re.sub(r"\D", "", fact.key).strip("0")
    return len(digits) >= 3


def leak_probe(
    foreign: Sequence[SourceDocument], *, own_text: str, limit: int, seed: str
) -> list[Example]:
    """Questions whose answers are facts of collections outside the profile.

    Only sharp canaries (see `sharp_canary`) whose key appears nowhere in the profile's own
    text: if the adapter says it, it can only have come from the foreign documents.
    """
    own = own_text.lower()
    facts = [
        f
        for f in _balanced([extract_facts(d) for d in foreign], limit * 8)
        if sharp_canary(f) and f.key.lower() not in own
    ]
    random.Random(seed).shuffle(facts)  # noqa: S311 - reproducible
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
