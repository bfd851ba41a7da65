"""The router: retrieval (RAG), the role's fine-tuned adapter, or both, per question, with a reason.

A pure function over facts the chat service gathered (strategy, adapter eligibility, what
retrieval found, token estimates, prices), so the whole decision table is testable without a
database or a model. The factors, in the order they are applied (docs/tuning.md):

1. governance — the role's strategy says retrieval, or no adapter may serve this user now
   (not every training document readable by them and current): RAG;
2. `tuned` strategy with an eligible adapter: the adapter;
3. (`auto`) nothing relevant is readable: RAG, which refuses without calling a model;
4. transience — retrieved evidence comes from documents the adapter was not trained on (newer
   versions, documents added since): RAG;
5. data volume — the relevant passages do not fit the prompt budget: the adapter, which needs
   no context;
6. measured best — the *hybrid* (the adapter with the best `TUNING_HYBRID_SOURCES` retrieved
   passages in its prompt) answered more held-out questions than the adapter alone and than
   retrieval, and at least `TUNING_ROUTER_MIN_ACCURACY`: the hybrid (it cites what it was given);
7. quality — the adapter's held-out accuracy is below `TUNING_ROUTER_MIN_ACCURACY`: RAG;
8. cost — both are expected to answer: the cheaper by estimated prompt tokens and prices.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

RAG = "rag"
TUNED = "tuned"
HYBRID = "hybrid"  # the adapter, with a short retrieved context
ADAPTER_ROUTES = frozenset([TUNED, HYBRID])  # served (and priced) by the adapter
# Not chosen by the router: the query-log route of a search through the API (no model asked).
SEARCH_API = "search"


@dataclass(frozen=True)
class Prices:
    """Per 1,000 tokens."""

    rag_prompt: float = 0.0
    rag_completion: float = 0.0
    tuned_prompt: float = 0.0
    tuned_completion: float = 0.0

    @classmethod
    def from_settings(cls) -> Prices:
        from django.conf import settings

        return cls(
            rag_prompt=settings.PRICE_RAG_PROMPT_PER_1K,
            rag_completion=settings.PRICE_RAG_COMPLETION_PER_1K,
            tuned_prompt=settings.PRICE_TUNED_PROMPT_PER_1K,
            tuned_completion=settings.PRICE_TUNED_COMPLETION_PER_1K,
        )

    def cost(self, route: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
        prompt, completion = (
            (self.tuned_prompt, self.tuned_completion)
            if route in ADAPTER_ROUTES
            else (self.rag_prompt, self.rag_completion)
        )
        value = Decimal(str(prompt)) * prompt_tokens + Decimal(str(completion)) * completion_tokens
        return (value / 1000).quantize(Decimal("0.00000001"))


@dataclass(frozen=True)
class RouteFacts:
    strategy: str  # "rag" | "tuned" | "auto"
    adapter: str | None = None  # the eligible adapter's name, if any
    ineligible_reason: str = ""  # why no adapter may serve (when adapter is None)
    adapter_accuracy: float | None = None  # held-out accuracy of the adapter
    rag_accuracy: float | None = None  # … of retrieval, on the same questions
    hybrid_accuracy: float | None = None  # … of the adapter with a short retrieved context
    min_accuracy: float = 0.5
    relevant_passages: int = 0  # readable passages retrieval found worth a prompt
    untrained_passages: int = 0  # of those, from documents (versions) the adapter never saw
    context_overflow: bool = False  # relevant passages left out for the prompt budget
    budget_tokens: int = 0
    rag_prompt_tokens: int = 0
    tuned_prompt_tokens: int = 0
    hybrid_prompt_tokens: int = 0
    prices: Prices = Prices()


@dataclass(frozen=True)
class Route:
    route: str
    reason: str


def decide(facts: RouteFacts) -> Route:
    """Which route answers, and why, in words a compliance officer can read."""
    if facts.strategy == RAG:
        return Route(RAG, "The role's routing strategy is retrieval.")
    if facts.adapter is None:
        why = facts.ineligible_reason or "No adapter is active for this access profile."
        return Route(RAG, f"{why} Retrieval answers instead.")
    if facts.strategy == TUNED:
        return Route(
            TUNED,
            "The role's routing strategy is the adapter, and every one of its training "
            "documents is readable by you and current.",
        )
    if facts.relevant_passages == 0:
        return Route(
            RAG, "Nothing relevant is readable for this question; retrieval says so directly."
        )
    if facts.untrained_passages:
        return Route(
            RAG,
            f"{facts.untrained_passages} of the relevant passages come from documents newer "
            "than the adapter; retrieval has them.",
        )
    if facts.context_overflow:
        return Route(
            TUNED,
            f"The relevant passages exceed the prompt budget of {facts.budget_tokens} tokens; "
            "the adapter needs no context.",
        )
    hybrid = facts.hybrid_accuracy
    others = [a for a in (facts.adapter_accuracy, facts.rag_accuracy) if a is not None]
    if hybrid is not None and hybrid >= facts.min_accuracy and all(hybrid > a for a in others):
        measured = ", ".join(
            f"{name} {value:.0%}"
            for name, value in (
                ("adapter with passages", hybrid),
                ("adapter alone", facts.adapter_accuracy),
                ("retrieval", facts.rag_accuracy),
            )
            if value is not None
        )
        return Route(
            HYBRID,
            f"The adapter given the best retrieved passages answered the most held-out "
            f"questions ({measured}); about {facts.hybrid_prompt_tokens} prompt tokens against "
            f"{facts.rag_prompt_tokens} with retrieval alone.",
        )
    if facts.adapter_accuracy is None or facts.adapter_accuracy < facts.min_accuracy:
        accuracy = "unknown" if facts.adapter_accuracy is None else f"{facts.adapter_accuracy:.0%}"
        return Route(
            RAG,
            f"The adapter's held-out accuracy ({accuracy}) is below the "
            f"{facts.min_accuracy:.0%} the router requires.",
        )
    rag_cost = facts.prices.cost(RAG, facts.rag_prompt_tokens, 0)
    tuned_cost = facts.prices.cost(TUNED, facts.tuned_prompt_tokens, 0)
    numbers = (
        f"about {facts.tuned_prompt_tokens} prompt tokens on the adapter against "
        f"{facts.rag_prompt_tokens} with retrieval"
    )
    if tuned_cost < rag_cost or (
        tuned_cost == rag_cost and facts.tuned_prompt_tokens < facts.rag_prompt_tokens
    ):
        return Route(TUNED, f"Both routes can answer; the adapter is cheaper ({numbers}).")
    return Route(RAG, f"Both routes can answer; retrieval is cheaper ({numbers}).")
