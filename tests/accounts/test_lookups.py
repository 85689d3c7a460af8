"""The bounds on what unknown API keys cost (accounts/lookups.py), with a clock the test turns."""

from __future__ import annotations

from accounts.lookups import LookupBudget, UnknownIds, client_group, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_ids_are_forgotten_after_their_time() -> None:
    clock = Clock()
    unknown = UnknownIds(ttl_seconds=60, max_entries=10, clock=clock)
    unknown.add("AAAAAAAAAAAA")

    clock.now += 59.9
    assert "AAAAAAAAAAAA" in unknown
    clock.now += 0.1
    assert "AAAAAAAAAAAA" not in unknown
    assert len(unknown) == 0


def test_unknown_ids_keep_at_most_their_size_dropping_the_oldest() -> None:
    unknown = UnknownIds(ttl_seconds=60, max_entries=100, clock=Clock())

    for n in range(10_000):
        unknown.add(f"id{n:010d}")

    assert len(unknown) == 100
    assert "id0000000000" not in unknown
    assert "id0000009999" in unknown


def test_an_address_gets_its_budget_then_waits_for_the_refill() -> None:
    clock = Clock()
    budget = LookupBudget(per_minute=3, clock=clock)

    assert [budget.take("198.51.100.1") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = budget.take("198.51.100.1")
    assert wait == 20.0  # one look-up every 20 s at 3 a minute
    assert retry_after(wait) == 20
    assert budget.take("198.51.100.2") == 0.0  # another address has its own
    clock.now += 20
    assert budget.take("198.51.100.1") == 0.0
    assert budget.take("198.51.100.1") > 0


def test_look_ups_that_find_a_key_are_given_back() -> None:
    budget = LookupBudget(per_minute=2, clock=Clock())

    for _ in range(10):
        assert budget.take("198.51.100.1") == 0.0
        budget.give_back("198.51.100.1")

    assert len(budget) == 0  # full buckets are not kept


def test_budgets_are_kept_for_a_bounded_number_of_addresses() -> None:
    budget = LookupBudget(per_minute=1, max_addresses=50, clock=Clock())

    for n in range(5000):
        budget.take(f"10.0.{n // 256}.{n % 256}")

    assert len(budget) == 50


def test_an_ipv6_host_shares_its_budget_across_its_64() -> None:
    budget = LookupBudget(per_minute=1, clock=Clock())

    assert budget.take("2001:db8:1:2::1") == 0.0
    assert budget.take("2001:db8:1:2:ffff::9") > 0
    assert budget.take("2001:db8:1:3::1") == 0.0
    assert client_group("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_group(None) == client_group("") == ""
    assert client_group("unix-socket") == "unix-socket"
