"""The schedule of logins after a controller refused the user or password."""

from __future__ import annotations

import random

from protocols.opcua.auth_retry import JITTER, AuthRetry


def test_delays_start_at_the_minimum_and_double_to_the_maximum() -> None:
    retry = AuthRetry(minimum=60, maximum=3600, rng=random.Random(7))

    delays = [retry.next_delay() for _ in range(10)]

    bases = [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]
    for delay, base in zip(delays, bases, strict=True):
        assert base <= delay <= base * (1 + JITTER)
    # A wrong password costs at most one login an hour once the maximum is reached.
    assert 3600 / delays[-1] <= 1


def test_never_sooner_than_the_minimum_and_reset_starts_over() -> None:
    retry = AuthRetry(minimum=10, maximum=60, rng=random.Random(1))
    assert all(retry.next_delay() >= 10 for _ in range(50))

    retry.reset()

    assert 10 <= retry.next_delay() <= 10 * (1 + JITTER)
