"""registry/fallback_policy.py: what a fallback policy may say, and which versions can answer for others."""

from __future__ import annotations

from typing import Any

import pytest

from registry.fallback_policy import DEFAULT_RESERVE_MS, PolicyError, parse
from registry.signature import incompatibility


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("cache", "must be an object"),
        ({}, "chain must be a non-empty list"),
        ({"chain": []}, "chain must be a non-empty list"),
        ({"chain": [{"kind": "oracle"}]}, "chain[0].kind must be one of cache, version, human_review"),
        ({"chain": ["cache"]}, "chain[0] must be an object"),
        ({"chain": [{"kind": "version"}]}, "chain[0].version is required"),
        ({"chain": [{"kind": "version", "version": "2"}]}, "chain[0].version must be an integer"),
        ({"chain": [{"kind": "version", "version": 2, "model": ""}]}, "chain[0].model must be a model name"),
        ({"chain": [{"kind": "cache", "ttl_seconds": 0}]}, "ttl_seconds must be an integer from 1"),
        ({"chain": [{"kind": "cache", "colour": 1}]}, "unknown field(s) colour"),
        ({"chain": [{"kind": "human_review", "status": 500}]}, "status must be 200 or 202"),
        ({"chain": [{"kind": "human_review"}, {"kind": "cache"}]}, "must be the chain's last step"),
        ({"chain": [{"kind": "cache"}, {"kind": "cache"}]}, "more than one 'cache' step"),
        ({"chain": [{"kind": "version", "version": 1}] * 2}, "the same fallback version twice"),
        ({"chain": [{"kind": "cache"}] + [{"kind": "version", "version": n} for n in range(1, 6)]}, "at most 5"),
        ({"on": [], "chain": [{"kind": "cache"}]}, "on must be a non-empty list"),
        ({"on": ["crash"], "chain": [{"kind": "cache"}]}, "'crash' is not a failure a fallback can take"),
        ({"on": ["timeout", "timeout"], "chain": [{"kind": "cache"}]}, "lists a failure twice"),
        ({"chain": [{"kind": "cache"}], "reserve_ms": -1}, "reserve_ms must be an integer from 0 to 10000"),
        ({"chain": [{"kind": "cache"}], "retries": 3}, "unknown field(s) retries"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(data: Any, message: str) -> None:
    with pytest.raises(PolicyError) as refused:
        parse(data)

    assert message in str(refused.value)


def test_defaults_cover_every_failure_and_survive_a_round_trip() -> None:
    policy = parse({"chain": [{"kind": "cache"}, {"kind": "version", "version": 2}, {"kind": "human_review"}]})

    assert policy.on == {"timeout", "model_error", "overload"}
    assert policy.reserve_ms == DEFAULT_RESERVE_MS
    assert policy.as_json() == {
        "on": ["timeout", "model_error", "overload"],
        "chain": [
            {"kind": "cache", "ttl_seconds": 86400},
            {"kind": "version", "version": 2},
            {"kind": "human_review", "status": 200},
        ],
        "reserve_ms": 100,
    }
    assert parse(policy.as_json()) == policy
    assert policy.caches_answers is not None
    assert policy.caches_answers.ttl_seconds == 86400


def test_the_reserve_is_held_back_only_when_timeouts_fall_back_and_never_more_than_half() -> None:
    on_timeout = parse({"chain": [{"kind": "human_review"}], "reserve_ms": 300})
    errors_only = parse({"on": ["model_error"], "chain": [{"kind": "human_review"}], "reserve_ms": 300})

    assert on_timeout.reserve_s(10.0) == pytest.approx(0.3)
    assert on_timeout.reserve_s(0.2) == pytest.approx(0.1)
    assert errors_only.reserve_s(10.0) == 0.0


SERVED = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 3]}],
}


def test_a_version_with_the_same_tensors_can_answer() -> None:
    smaller = {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [
            {"name": "output", "datatype": "FP32", "shape": [-1, 3]},
            {"name": "extra", "datatype": "INT64", "shape": [-1]},
        ],
    }

    assert incompatibility(SERVED, smaller) is None


@pytest.mark.parametrize(
    ("fallback", "reason"),
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}], "outputs": SERVED["outputs"]}, "no input"),
        (
            {"inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 4]}], "outputs": SERVED["outputs"]},
            "input 'input' is FP64 there, FP32 here",
        ),
        (
            {"inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}], "outputs": SERVED["outputs"]},
            "has shape [-1, 8] there",
        ),
        (
            {
                "inputs": [*SERVED["inputs"], {"name": "mask", "datatype": "BOOL", "shape": [-1]}],
                "outputs": SERVED["outputs"],
            },
            "needs input(s) this model's requests do not carry: mask",
        ),
        ({"inputs": SERVED["inputs"], "outputs": []}, "no output 'output'"),
    ],
)
def test_a_version_with_other_tensors_cannot_answer_and_the_reason_names_the_tensor(
    fallback: dict[str, Any], reason: str
) -> None:
    found = incompatibility(SERVED, fallback)

    assert found is not None
    assert reason in found
