"""The prompt: a system message, numbered sources within a token budget, the question.

Pure functions; the chat service supplies the token counter of the model in use.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# The same for every question, so that the model server keeps its tokens in its prompt cache and
# only the sources and the question are read anew (prefill is most of the wait on a CPU). It no
# longer asks for "[1]"-style references: small models then answered with a bare "[2]"
# (docs/models.md); the app attaches the sources it sent, and checks the figures itself.
SYSTEM_PROMPT = (
    "You are Counsel, the internal consultant of this company. Answer the question from the "
    "sources below and nothing else. Write figures, dates, codes and names exactly as the "
    "sources write them. If the sources do not say, answer: I could not find that in the "
    "documents. Answer in one or two sentences."
)

# Asked before the answer, as its own request with the same prompt: does what the model was
# given answer the question at all? A small model told in its instructions to say "I could not
# find that" still answered unanswerable questions from whatever passage it had (a third of
# them refused), and repeating the instruction after the question made it refuse answerable
# ones (answers right: 22 % instead of 50 % on the same questions; docs/benchmarks.md,
# "Answers"). As a yes/no question of its own it costs one token, and the answer's request
# reuses the server's cached prompt up to the question.
ANSWERABLE_QUESTION = "Do the sources above answer the question? Reply with yes or no only."


def answerable_messages(messages: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The retrieval prompt with the yes/no question appended to its user message."""
    *head, (role, user) = messages
    return [*head, (role, f"{user}\n\n{ANSWERABLE_QUESTION}")]


def says_no(reply: str) -> bool:
    """The model's reply to ANSWERABLE_QUESTION is a no (anything else lets the answer go on)."""
    return re.match(r"\W*no\b", reply.strip().lower()) is not None


def answerable_probability(top_logprobs: Sequence[dict] | None) -> float | None:
    """How sure the model is that its sources answer the question: P(yes) / (P(yes) + P(no))
    over the first token's alternatives ("Yes", " yes", "YES" count as one), or None when
    neither word is among them (or the server sent no log-probabilities).

    Greedy decoding says "no" whenever that share is below one half; a threshold on it
    (CHAT_ANSWERABLE_MIN_YES) lets a model that hesitates be read as the refusal it is
    (docs/benchmarks.md, "Answers").
    """
    mass = {"yes": 0.0, "no": 0.0}
    for item in top_logprobs or ():
        word = str(item.get("token", "")).strip().lower()
        logprob = item.get("logprob")
        if word in mass and isinstance(logprob, int | float) and math.isfinite(logprob):
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None


# Words that make a short follow-up depend on the previous question ("and for Munich?").
_REFERRING = re.compile(
    r"\b(it|its|this|that|these|those|they|them|their|there|he|she|his|her|same|also|"
    r"what about|how about|and)\b",
    re.IGNORECASE,
)


def condense_question(question: str, previous_questions: Sequence[str]) -> str:
    """A standalone version of a follow-up question, from the recent turns.

    Rule-based on purpose: the embedded model is too small to rewrite questions reliably and a
    rewrite would cost a second generation before the first token. A short question that leans
    on the previous one ("and in Munich?") is searched together with it.
    """
    question = " ".join(question.split())
    if not previous_questions:
        return question
    words = question.split()
    if len(words) <= 6 or (len(words) <= 14 and _REFERRING.search(question)):
        return f"{previous_questions[-1]} {question}"
    return question


@dataclass(frozen=True)
class Source:
    number: int
    title: str
    heading: str
    page: int | None
    text: str


@dataclass(frozen=True)
class Prompt:
    messages: list[tuple[str, str]]  # (role, content) for the chat model
    sources: list[Source]
    prompt_tokens: int


def _source_block(source: Source) -> str:
    where = source.title
    if source.heading:
        where += f" — {source.heading}"
    return f"Source: {where}\n{source.text.strip()}"


def build_prompt(
    *,
    question: str,
    sources: Sequence[Source],
    count_tokens: Callable[[str], int],
    budget_tokens: int,
) -> Prompt:
    """Fit as many sources as the budget allows, best first; never cut one in the middle."""
    fixed = count_tokens(SYSTEM_PROMPT) + count_tokens(question) + 40  # template overhead
    used: list[Source] = []
    spent = fixed
    for source in sources:
        cost = count_tokens(_source_block(source)) + 2
        if spent + cost > budget_tokens:
            break
        used.append(source)
        spent += cost
    context = "\n\n".join(_source_block(s) for s in used)
    user = f"Sources:\n\n{context}\n\nQuestion: {question}" if used else f"Question: {question}"
    return Prompt(
        messages=[("system", SYSTEM_PROMPT), ("user", user)],
        sources=used,
        prompt_tokens=spent,
    )


# The adapter route: no sources, the adapter answers from what it was trained on. The same
# system prompt is used to train the adapters (tuning.training), so serving matches training:
# changing it means training the adapters again. It is short on purpose: it is part of every
# training example, and a 65-token prompt made up two thirds of the tokens a training step
# computes (docs/benchmarks.md, "Adapters"). Facts, refusals and brevity come from the training
# pairs, not from instructions the small model follows loosely anyway.
TUNED_SYSTEM_PROMPT = "You are Counsel, the company's internal consultant. Answer briefly."


def tuned_messages(question: str) -> list[tuple[str, str]]:
    return [("system", TUNED_SYSTEM_PROMPT), ("user", question)]


def build_tuned_prompt(*, question: str, count_tokens: Callable[[str], int]) -> Prompt:
    """The adapter route's prompt: system message and question only (hence its low cost)."""
    tokens = count_tokens(TUNED_SYSTEM_PROMPT) + count_tokens(question) + 20  # template overhead
    return Prompt(messages=tuned_messages(question), sources=[], prompt_tokens=tokens)
