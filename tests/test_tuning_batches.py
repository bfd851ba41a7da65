"""Training batches: every example once per epoch, similar lengths together, random order."""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from tuning import training


@given(
    lengths=st.lists(st.integers(min_value=1, max_value=256), max_size=300),
    batch_size=st.integers(min_value=1, max_value=16),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_an_epoch_uses_every_example_exactly_once_in_the_planned_number_of_steps(
    lengths, batch_size, seed
):
    batches = training.batch_order(lengths, batch_size, random.Random(seed))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(0 < len(batch) <= batch_size for batch in batches)
    assert len(batches) == math.ceil(len(lengths) / batch_size)
    assert len(batches) == training.planned_steps(
        len(lengths), batch_size=batch_size, epochs=1, max_steps=0
    )


def padded(lengths, batches):
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in batches)


def test_similar_lengths_share_a_batch_and_the_order_still_changes_between_epochs():
    rng = random.Random(7)
    lengths = [rng.randint(40, 170) for _ in range(310)]  # like a profile's training pairs
    plain = [list(range(len(lengths)))[i : i + 8] for i in range(0, len(lengths), 8)]
    first = training.batch_order(lengths, 8, rng)
    second = training.batch_order(lengths, 8, rng)
    # Padding to the longest example of each batch: far less than batches of arrival order.
    assert padded(lengths, first) < 0.85 * padded(lengths, plain)
    assert first != second
    assert [sorted(b) for b in first] != [sorted(b) for b in second]
