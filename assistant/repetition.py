"""Spotting a model that loops, while it streams.

Small models given a prompt full of figures sometimes repeat one sentence until the length cap
("The answer is: 1. The answer is: 1. The answer is: 2. …"). The request's frequency penalty
makes it rarer; this check stops the stream when it happens all the same, so that nobody reads
(and no slot decodes) a page of repetition. Digits are compared as one class: a loop that only
counts up is still a loop.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")
_SPACE = re.compile(r"\s+")
_MIN_SPAN = 36


def looping(text: str, *, repeats: int = 3, min_period: int = 4, max_period: int = 240) -> bool:
    """True when the end of ``text`` is one stretch of ``min_period`` to ``max_period``
    characters repeated ``repeats`` times in a row (whitespace and digits folded); a short
    stretch must repeat until the copies span at least 36 characters ("no, no" is no loop)."""
    tail = _SPACE.sub(" ", _DIGITS.sub("0", text[-(max_period * repeats + 8) :])).rstrip()
    for period in range(min_period, min(max_period, len(tail) // repeats) + 1):
        unit = tail[-period:]
        if not unit.strip():
            continue
        needed = max(repeats, -(-_MIN_SPAN // period))
        if period * needed > len(tail):
            continue
        if all(tail[-(k + 1) * period : -k * period] == unit for k in range(1, needed)):
            return True
    return False
