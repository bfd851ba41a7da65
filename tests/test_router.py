"""The router's decision table (a pure function: no database, no model)."""

from decimal import Decimal

import pytest

from assistant.router import Prices, RouteFacts, decide

PRICES = Prices(rag_prompt=0.5, rag_completion=1.5, tuned_prompt=0.6, tuned_completion=1.8)
ELIGIBLE = {
    "strategy": "auto",
    "adapter": "ap-123-v1",
    "adapter_accuracy": 0.8,
    "min_accuracy": 0.5,
    "relevant_passages": 3,
    "untrained_passages": 0,
    "context_overflow": False,
    "budget_tokens": 1100,
    "rag_prompt_tokens": 600,
    "tuned_prompt_tokens": 60,
    "prices": PRICES,
}

CASES = [
    # (what changes from an eligible adapter under `auto`, route, words in the reason)
    ({"strategy": "rag"}, "rag", "strategy is retrieval"),
    ({"strategy": "rag", "adapter": None}, "rag", "strategy is retrieval"),
    ({"adapter": None}, "rag", "No adapter is active"),
    (
        {"adapter": None, "ineligible_reason": "Adapter refused: 2 of the 12 training documents"},
        "rag",
        "2 of the 12 training documents",
    ),
    ({"strategy": "tuned"}, "tuned", "strategy is the adapter"),
    ({"strategy": "tuned", "relevant_passages": 0}, "tuned", "strategy is the adapter"),
    ({"strategy": "tuned", "adapter": None}, "rag", "No adapter"),
    ({"relevant_passages": 0}, "rag", "Nothing relevant"),
    ({"untrained_passages": 2}, "rag", "2 of the relevant passages come from documents newer"),
    ({"untrained_passages": 1, "context_overflow": True}, "rag", "newer than the adapter"),
    ({"context_overflow": True}, "tuned", "exceed the prompt budget of 1100 tokens"),
    ({"context_overflow": True, "adapter_accuracy": 0.1}, "tuned", "prompt budget"),
    ({"adapter_accuracy": 0.3}, "rag", "held-out accuracy (30%) is below the 50%"),
    ({"adapter_accuracy": None}, "rag", "accuracy (unknown)"),
    ({}, "tuned", "the adapter is cheaper (about 60 prompt tokens"),
    ({"tuned_prompt_tokens": 700}, "rag", "retrieval is cheaper"),
    # The hybrid, when it measured best and well enough.
    (
        {"hybrid_accuracy": 0.6, "adapter_accuracy": 0.2, "rag_accuracy": 0.17},
        "hybrid",
        "adapter with passages 60%, adapter alone 20%, retrieval 17%",
    ),
    ({"hybrid_accuracy": 0.6, "adapter_accuracy": None, "rag_accuracy": None}, "hybrid", "60%"),
    ({"hybrid_accuracy": 0.6, "rag_accuracy": 0.7}, "tuned", "the adapter is cheaper"),
    ({"hybrid_accuracy": 0.6, "adapter_accuracy": 0.6, "rag_accuracy": 0.1}, "tuned", "cheaper"),
    ({"hybrid_accuracy": 0.4, "adapter_accuracy": 0.2, "rag_accuracy": 0.1}, "rag", "below"),
    ({"hybrid_accuracy": 0.9, "untrained_passages": 1}, "rag", "newer than the adapter"),
    ({"hybrid_accuracy": 0.9, "relevant_passages": 0}, "rag", "Nothing relevant"),
    ({"hybrid_accuracy": 0.9, "context_overflow": True}, "tuned", "prompt budget"),
    ({"hybrid_accuracy": 0.9, "strategy": "tuned"}, "tuned", "strategy is the adapter"),
    ({"hybrid_accuracy": 0.9, "strategy": "rag"}, "rag", "strategy is retrieval"),
    (
        {"prices": Prices(rag_prompt=0.01, tuned_prompt=1.0), "tuned_prompt_tokens": 60},
        "rag",
        "retrieval is cheaper",
    ),
]


@pytest.mark.parametrize(("change", "route", "reason"), CASES)
def test_router_decision_table(change, route, reason):
    decision = decide(RouteFacts(**{**ELIGIBLE, **change}))
    assert decision.route == route
    assert reason in decision.reason


def test_cost_estimate_uses_the_route_prices_per_thousand_tokens():
    assert PRICES.cost("rag", 1000, 100) == Decimal("0.65000000")
    assert PRICES.cost("tuned", 1000, 100) == Decimal("0.78000000")
    assert PRICES.cost("hybrid", 1000, 100) == Decimal("0.78000000")  # served by the adapter
    assert Prices().cost("rag", 500, 20) == Decimal("0")
