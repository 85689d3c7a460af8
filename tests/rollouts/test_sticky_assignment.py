"""Sticky traffic splitting: the share of routing keys each arm gets follows the
weights, and a key keeps its arm. That the gateway routes by it, with a real worker
serving both arms, is tests/integration/test_sticky_assignment.py."""

from __future__ import annotations

from collections import Counter

import pytest

from rollouts.splitting import SLOTS, bounds, choose, mirrored

KEYS = [f"user-{i}" for i in range(10_000)]


@pytest.mark.parametrize("weights", [[50, 50], [20, 30, 50], [5, 95], [1, 1, 1, 1]])
def test_over_10000_keys_each_arm_gets_its_weight_within_2_points(weights: list[float]) -> None:
    edges = bounds(weights)
    counts = Counter(choose(42, key, edges) for key in KEYS)
    for index, weight in enumerate(weights):
        share = counts[index] / len(KEYS)
        assert share == pytest.approx(weight / sum(weights), abs=0.02), (index, share)


def test_a_key_keeps_its_arm_and_rollouts_shuffle_keys_independently() -> None:
    edges = bounds([50, 50])
    first = [choose(1, key, edges) for key in KEYS]
    assert first == [choose(1, key, edges) for key in KEYS]  # the same arm every time
    second = [choose(2, key, edges) for key in KEYS]
    both = sum(1 for a, b in zip(first, second, strict=True) if a == b == 0) / len(KEYS)
    assert both == pytest.approx(0.25, abs=0.02)  # independent halves, not the same half


def test_the_mirrored_fraction_follows_its_setting_and_sticks() -> None:
    for fraction in (0.1, 0.5, 1.0):
        share = sum(mirrored(7, key, fraction) for key in KEYS) / len(KEYS)
        assert share == pytest.approx(fraction, abs=0.02)
    assert [mirrored(7, key, 0.3) for key in KEYS[:100]] == [mirrored(7, key, 0.3) for key in KEYS[:100]]


def test_weights_are_checked() -> None:
    assert bounds([0, 100]) == [0, SLOTS]
    assert {choose(3, key, bounds([0, 100])) for key in KEYS[:500]} == {1}
    with pytest.raises(ValueError, match="more than 0"):
        bounds([0, 0])
    with pytest.raises(ValueError, match="negative"):
        bounds([-1, 2])
