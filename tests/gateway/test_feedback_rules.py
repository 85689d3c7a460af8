"""What a feedback join remembers and which rewards a metric takes (gateway/feedback.py)."""

from __future__ import annotations

import pytest

from gateway.feedback import Join, check_reward, parse
from gateway.protocol import ProtocolError


def test_a_join_keeps_its_rollout_arm_metric_and_owner() -> None:
    join = Join(12, "arm:with:colons", "binary", "AbCdEfGh1234")

    assert Join.decode(join.encode().encode()) == join
    assert Join.decode(Join(3, "b", "numeric", "").encode()) == Join(3, "b", "numeric", "")


def test_a_join_from_the_previous_release_has_no_owner_or_metric() -> None:
    assert Join.decode(b"7:treatment") == Join(7, "treatment", "", None)
    assert Join.decode(b"7:a:b") == Join(7, "a:b", "", None)
    assert Join.decode(b"garbage") is None
    assert Join.decode(b'{"r": "x"}') is None


@pytest.mark.parametrize("reward", [2.5, -1.0, 0.5, 1e200, -1e308])
def test_a_binary_metric_refuses_anything_but_0_and_1(reward: float) -> None:
    with pytest.raises(ProtocolError) as refused:
        check_reward(reward, "binary", 1e9)
    assert refused.value.status == 400
    assert "0 or 1" in refused.value.message


@pytest.mark.parametrize("metric", ["numeric", ""])
def test_a_numeric_or_unrecorded_metric_refuses_rewards_beyond_the_range(metric: str) -> None:
    for reward in (1e9 + 1, -1e9 - 1, 1e200):
        with pytest.raises(ProtocolError, match="within -1e\\+09 and 1e\\+09"):
            check_reward(reward, metric, 1e9)
    for reward in (0.0, 1.0, -1e9, 1e9, 2.5):
        check_reward(reward, metric, 1e9)


def test_rewards_must_be_finite_numbers_or_booleans() -> None:
    assert parse(b'{"id": "r1", "reward": true}') == ("r1", 1.0)
    assert parse(b'{"id": "r1", "reward": 3}') == ("r1", 3.0)
    for body in (b'{"id": "r1", "reward": 1e400}', b'{"id": "r1", "reward": "1"}', b'{"id": "r1"}'):
        with pytest.raises(ProtocolError) as refused:
            parse(body)
        assert refused.value.status == 400
