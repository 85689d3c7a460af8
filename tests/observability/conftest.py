"""Fixtures for the latency figures: the rollups, the dashboard's queries, `/metrics`.

Observations are written to Redis by the real `Recorder` (`inject`, from tests/conftest.py,
which the dashboard's page tests use too), with helpers from tests/support/figures.py;
models are registered by `owner` (`register`). `viewer` and `admin` are the personas of
tests/conftest.py: any signed-in user reads the figures, only an admin's session the metrics.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone


@pytest.fixture
def now() -> dt.datetime:
    """A fixed 'now', 30 s into a minute, so that a test never straddles a minute boundary."""
    moment = timezone.now()
    return moment.replace(second=30, microsecond=0)
