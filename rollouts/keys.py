"""Redis keys of rollouts, shared by the gateway (which writes them) and the analysis (which reads them)."""


def moments_key(prefix: str, rollout_id: int, arm: str) -> str:
    """Running sums (n, sum, sumsq) of the rewards joined to one arm."""
    return f"{prefix}:fb:{rollout_id}:{arm}"
