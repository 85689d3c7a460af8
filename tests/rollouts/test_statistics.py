"""The experiment statistics, checked by simulation (rollouts/statistics.py).

Simulated experiments are looked at after every 100 samples per arm, as a
dashboard refreshed every minute would. The always-valid p-value must keep the
false-positive rate of A/A experiments at alpha however often it is read, and
detect a true lift with the power the page promises within the sample size it
predicts.

The simulations vectorise the same formulas `statistics.compare` applies (a
scalar function: 200,000 calls would take minutes); a spot check holds the two
equal, so the simulation tests the module's own arithmetic.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from rollouts.statistics import Comparison, Moments, compare, failure_excess, msprt_p_value, sequential_sample_size

EXPERIMENTS = 2_000
CHECK_EVERY = 100
ALPHA = 0.05
MINIMUM_EFFECT = 0.02
TAU_SQ = MINIMUM_EFFECT**2  # compare() sets the mixture's scale to the minimum effect


def conversions(rng: np.random.Generator, rate: float, checks: int) -> np.ndarray:
    """Cumulative conversions per experiment at each check: [EXPERIMENTS, checks]."""
    return np.cumsum(rng.binomial(CHECK_EVERY, rate, size=(EXPERIMENTS, checks)), axis=1)


def p_values(control: np.ndarray, treatment: np.ndarray) -> np.ndarray:
    """`compare`'s always-valid p-value at every check, 0/1 rewards: the running minimum of 1/Λ."""
    n = CHECK_EVERY * np.arange(1, control.shape[1] + 1, dtype=np.float64)

    def variance(successes: np.ndarray) -> np.ndarray:
        # Moments.variance with total_sq == total (0/1 rewards)
        return np.maximum(0.0, (successes - successes * successes / n) / (n - 1))

    difference = (treatment - control) / n
    v = variance(control) / n + variance(treatment) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lambda = 0.5 * np.log(v / (v + TAU_SQ)) + TAU_SQ * difference**2 / (2 * v * (v + TAU_SQ))
        p = np.where(v > 0, np.minimum(1.0, np.exp(-log_lambda)), 1.0)
    return np.minimum.accumulate(p, axis=1)


def moments(successes: int, n: int) -> Moments:
    return Moments(n, float(successes), float(successes))


def test_the_vectorised_simulation_matches_compare() -> None:
    rng = np.random.default_rng(7)
    control, treatment = conversions(rng, 0.10, 20)[:50], conversions(rng, 0.12, 20)[:50]
    simulated = p_values(control, treatment)
    for e in range(0, 50, 7):
        previous = 1.0
        for check in range(20):
            n = CHECK_EVERY * (check + 1)
            result = compare(
                moments(int(control[e, check]), n),
                moments(int(treatment[e, check]), n),
                alpha=ALPHA,
                minimum_effect=MINIMUM_EFFECT,
                previous_p=previous,
            )
            previous = result.p_value
            assert simulated[e, check] == pytest.approx(result.p_value, rel=1e-9, abs=1e-12)


def test_a_a_experiments_read_after_every_100_samples_keep_false_positives_at_alpha() -> None:
    # Given 2,000 experiments whose arms convert alike, read every 100 samples up to 10,000
    rng = np.random.default_rng(20_240)
    checks = 10_000 // CHECK_EVERY
    control, treatment = conversions(rng, 0.10, checks), conversions(rng, 0.10, checks)

    # When each is declared significant the first time its p-value reaches alpha
    ever_significant = (p_values(control, treatment) <= ALPHA).any(axis=1)

    # Then at most 5 % (within the simulation's own error, ±1.5 points) ever were
    rate = ever_significant.mean()
    assert rate <= ALPHA + 0.015, f"{rate:.3%} of A/A experiments were declared significant"


def predicted_samples(control_rate: float, treatment_rate: float, n: int = 1_000) -> int:
    """What the page shows for an experiment whose arms convert at these rates: `samples_needed`
    (more samples per arm) plus the samples each arm has."""
    comparison: Comparison = compare(
        moments(round(control_rate * n), n),
        moments(round(treatment_rate * n), n),
        alpha=ALPHA,
        minimum_effect=MINIMUM_EFFECT,
    )
    assert comparison.samples_needed is not None
    return comparison.samples_needed + n


def test_the_predicted_sample_size_is_the_sequential_tests_own() -> None:
    n = 1_000
    control, treatment = moments(100, n), moments(120, n)
    assert control.variance is not None
    assert treatment.variance is not None
    summed = control.variance + treatment.variance
    assert predicted_samples(0.10, 0.12, n) == sequential_sample_size(summed, MINIMUM_EFFECT, tau_sq=TAU_SQ)
    # a fixed-horizon two-sample z-test needs fewer: the sequential test pays for peeking
    fixed = math.ceil((1.959964 + 0.841621) ** 2 * summed / MINIMUM_EFFECT**2)
    assert predicted_samples(0.10, 0.12, n) > fixed


def test_a_lift_from_10_to_12_percent_is_detected_with_80_percent_power_within_the_predicted_samples() -> None:
    # Given 2,000 experiments with a true lift of two points, read every 100 samples
    predicted = predicted_samples(0.10, 0.12)
    checks = math.ceil(predicted / CHECK_EVERY)
    rng = np.random.default_rng(31_337)
    control, treatment = conversions(rng, 0.10, checks), conversions(rng, 0.12, checks)

    # When the experiments run up to the sample size the page predicts
    detected = (p_values(control, treatment) <= ALPHA).any(axis=1)

    # Then at least 80 % found the lift, and in its direction
    assert detected.mean() >= 0.80, f"power {detected.mean():.1%} at {checks * CHECK_EVERY} samples per arm"
    assert (treatment[detected, -1] > control[detected, -1]).mean() > 0.99


def test_the_p_value_is_one_without_data_and_never_rises() -> None:
    empty = compare(Moments(0, 0.0, 0.0), Moments(0, 0.0, 0.0), minimum_effect=MINIMUM_EFFECT)
    assert (empty.p_value, empty.significant, empty.difference) == (1.0, False, None)
    earlier = compare(moments(100, 1_000), moments(160, 1_000), minimum_effect=MINIMUM_EFFECT)
    later = compare(moments(200, 2_000), moments(200, 2_000), minimum_effect=MINIMUM_EFFECT, previous_p=earlier.p_value)
    assert earlier.significant
    assert later.p_value == earlier.p_value
    assert msprt_p_value(0.0, 0.0, TAU_SQ) == 1.0


# --- The canary's early abort: one-sided, always valid ------------------------------------------------------------


def test_failure_excess_needs_the_minimum_and_both_arms() -> None:
    assert failure_excess(19, 19, 0, 1000, margin=0.01, alpha=0.001, min_requests=20).decided is False
    assert failure_excess(20, 20, 0, 0, margin=0.01, alpha=0.001, min_requests=20).decided is False
    assert failure_excess(0, 0, 0, 1000, margin=0.01, alpha=0.001, min_requests=20).difference is None


def test_a_candidate_better_than_the_reference_is_never_stopped() -> None:
    assert failure_excess(0, 500, 400, 500, margin=0.0, alpha=0.5, min_requests=20).p_value == 1.0


def test_every_request_failing_is_decided_at_20_requests() -> None:
    found = failure_excess(20, 20, 5, 1000, margin=0.01, alpha=0.001, min_requests=20)
    assert found.decided
    assert found.difference == pytest.approx(0.995)


def test_healthy_candidates_are_not_stopped_by_noise_however_often_looked_at() -> None:
    # 300 canaries with the champion's own failure rate, looked at after every 10 of their
    # requests up to 2,000 (200 looks each), for rates from 0 to 20 %: none stopped. The
    # decision's false-positive rate is at most alpha (0.001) over all looks together.
    stopped = 0
    for rate in (0.0, 0.01, 0.05, 0.2):
        for seed in range(75):
            rng = random.Random(seed)
            cf = cn = rf = rn = 0
            for _ in range(200):
                cn += 10
                cf += sum(rng.random() < rate for _ in range(10))
                rn += 190
                rf += sum(rng.random() < rate for _ in range(190))
                if failure_excess(cf, cn, rf, rn, margin=0.01, alpha=0.001, min_requests=20).decided:
                    stopped += 1
                    break
    assert stopped == 0


def test_a_clearly_worse_candidate_is_stopped_soon() -> None:
    # 30 % failures against 1 %: stopped before the default min_requests (100) in each of 50 runs.
    for seed in range(50):
        rng = random.Random(seed)
        cf = cn = rf = rn = 0
        while True:
            cn += 10
            cf += sum(rng.random() < 0.3 for _ in range(10))
            rn += 190
            rf += sum(rng.random() < 0.01 for _ in range(190))
            if failure_excess(cf, cn, rf, rn, margin=0.01, alpha=0.001, min_requests=20).decided:
                break
        assert cn < 100, (seed, cn, cf)
