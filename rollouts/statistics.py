"""Statistics for rollouts. No Django imports.

- Mean and 95 % confidence interval of an arm's reward (binary rewards are
  conversions: the same maths on 0/1 values).
- The difference of each arm against the control with an always-valid p-value
  from the mixture sequential probability ratio test (mSPRT; Johari, Pekelis and
  Walsh, "Always valid inference", 2017). Unlike a t-test's p-value, it may be
  looked at after every request without inflating false positives, so the
  dashboard can show it live.
- The sample size per arm at which this same sequential test detects the
  configured minimum effect with 80 % power, so the page's prediction is about
  the test it runs (a fixed-horizon formula would promise too few).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

Z = NormalDist()


@dataclass(frozen=True)
class Moments:
    """Running sums of one arm's rewards."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None

    @property
    def variance(self) -> float | None:
        if self.n < 2:
            return None
        mean = self.total / self.n
        return max(0.0, (self.total_sq - self.n * mean * mean) / (self.n - 1))

    def interval(self, confidence: float = 0.95) -> tuple[float, float] | None:
        if self.n < 2 or self.variance is None or self.mean is None:
            return None
        half = Z.inv_cdf(0.5 + confidence / 2) * math.sqrt(self.variance / self.n)
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class Comparison:
    difference: float | None  # treatment mean - control mean
    interval: tuple[float, float] | None  # (1 - alpha) CI of the difference (fixed-horizon; 95 % at alpha 0.05)
    p_value: float  # always-valid (mSPRT), 1.0 until there is data
    significant: bool
    samples_needed: int | None  # more samples per arm the sequential test needs for 80 % power


def msprt_p_value(difference: float, variance_of_difference: float, tau_sq: float) -> float:
    """1 / Λ for a normal mixture N(0, τ²) over the true difference."""
    v = variance_of_difference
    if v <= 0:
        return 1.0
    log_lambda = 0.5 * math.log(v / (v + tau_sq)) + (tau_sq * difference * difference) / (2 * v * (v + tau_sq))
    return min(1.0, math.exp(-log_lambda)) if log_lambda < 700 else 0.0


def compare(
    control: Moments,
    treatment: Moments,
    *,
    alpha: float = 0.05,
    minimum_effect: float | None = None,
    previous_p: float = 1.0,
    power: float = 0.8,
) -> Comparison:
    """Treatment against control. `previous_p` carries the running minimum: an
    always-valid p-value never goes back up."""
    cv, tv = control.variance, treatment.variance
    if control.mean is None or treatment.mean is None or cv is None or tv is None:
        return Comparison(None, None, previous_p, previous_p <= alpha, None)
    difference = treatment.mean - control.mean
    v = cv / control.n + tv / treatment.n
    spread = max(cv, tv, 1e-12)
    # The mixture's scale: the effect we care about, else a tenth of a standard deviation.
    tau_sq = (minimum_effect if minimum_effect else 0.1 * math.sqrt(spread)) ** 2
    p_value = min(previous_p, msprt_p_value(difference, v, tau_sq))
    half = Z.inv_cdf(1 - alpha / 2) * math.sqrt(v)
    needed = None
    if minimum_effect:
        per_arm = sequential_sample_size(cv + tv, minimum_effect, alpha=alpha, power=power, tau_sq=tau_sq)
        needed = max(0, per_arm - min(control.n, treatment.n))
    return Comparison(difference, (difference - half, difference + half), p_value, p_value <= alpha, needed)


def sequential_sample_size(
    summed_variance: float, effect: float, *, alpha: float = 0.05, power: float = 0.8, tau_sq: float | None = None
) -> int:
    """Samples per arm at which the mSPRT rejects with probability `power` when the true
    difference is `effect`. `summed_variance` is the two arms' per-sample variances added.

    At n samples per arm the test rejects once |difference| reaches the boundary
    c_n where 1/Λ_n = alpha; with the estimate ~ N(effect, V_n) the chance of that is
    Φ((|effect| - c_n) / √V_n). Earlier crossings only add power, so the answer is
    conservative. Binary search over n.
    """
    effect = abs(effect)
    if effect == 0 or summed_variance <= 0:
        return 0
    tau_sq = tau_sq if tau_sq is not None else effect * effect
    target = Z.inv_cdf(power)

    def detects(n: int) -> bool:
        v = summed_variance / n
        boundary = math.sqrt(2 * v * (v + tau_sq) / tau_sq * (math.log(1 / alpha) + 0.5 * math.log((v + tau_sq) / v)))
        return (effect - boundary) / math.sqrt(v) >= target

    low, high = 1, 2
    while not detects(high):
        low, high = high, high * 2
        if high > 10**12:
            return high
    while low < high:
        middle = (low + high) // 2
        if detects(middle):
            high = middle
        else:
            low = middle + 1
    return low


@dataclass(frozen=True)
class FailureExcess:
    """Whether a candidate's failure rate is, beyond doubt, above a reference's plus a margin."""

    difference: float | None  # candidate failure rate - reference failure rate; None without requests
    p_value: float  # always-valid, for "the excess is no more than the margin"; 1.0 when not judged
    decided: bool  # p_value <= alpha with enough candidate requests: stop the candidate now


def failure_excess(
    candidate_failures: int,
    candidate_n: int,
    reference_failures: int,
    reference_n: int,
    *,
    margin: float,
    alpha: float,
    min_requests: int,
    tau: float = 0.1,
) -> FailureExcess:
    """One-sided test of H0: p_candidate - p_reference <= margin, safe to repeat at every look.

    The mSPRT statistic above (normal mixture over the difference, scale `tau`), on the
    difference minus the margin, with each arm's variance from its Agresti-Caffo adjusted rate
    ((failures + 1) / (n + 2)): the raw rate's variance is 0 at 0 % or 100 %, which would make a
    canary failing every request look like no evidence at all. Only an excess counts (a
    candidate better than the reference is never stopped), so the error rate of the one-sided
    decision is at most the two-sided test's alpha.
    """
    if candidate_n <= 0 or reference_n <= 0:
        return FailureExcess(None, 1.0, False)
    difference = candidate_failures / candidate_n - reference_failures / reference_n
    if candidate_n < min_requests:
        return FailureExcess(difference, 1.0, False)
    adjusted_candidate = (candidate_failures + 1) / (candidate_n + 2)
    adjusted_reference = (reference_failures + 1) / (reference_n + 2)
    excess = adjusted_candidate - adjusted_reference - margin
    if excess <= 0:
        return FailureExcess(difference, 1.0, False)
    variance = adjusted_candidate * (1 - adjusted_candidate) / (candidate_n + 2) + adjusted_reference * (
        1 - adjusted_reference
    ) / (reference_n + 2)
    p_value = msprt_p_value(excess, variance, tau * tau)
    return FailureExcess(difference, p_value, p_value <= alpha)
