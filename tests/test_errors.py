"""The taxonomy's retry decision: transient only, bounded, with backoff and jitter."""

from __future__ import annotations

import random

from pipeline.core.errors import ErrorCode, RecastError, retry_decision


def test_permanent_errors_are_never_retried() -> None:
    error = RecastError(ErrorCode.SOURCE_UNAVAILABLE, "gone")
    assert not retry_decision(error, 1, max_attempts=5).retry


def test_transient_errors_back_off_exponentially_with_jitter() -> None:
    error = RecastError(ErrorCode.NETWORK_SERVER_ERROR, "HTTP 500")
    rng = random.Random(7)
    delays = [
        retry_decision(error, n, max_attempts=10, base_delay_s=1, rng=rng).delay_s
        for n in range(1, 6)
    ]
    for n, delay in enumerate(delays, start=1):
        ceiling = 2 ** (n - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert len({round(d, 6) for d in delays}) == len(delays)
    assert not retry_decision(error, 10, max_attempts=10).retry


def test_retry_after_is_a_floor() -> None:
    error = RecastError(ErrorCode.NETWORK_RATE_LIMITED, "429", retry_after=30)
    decision = retry_decision(error, 1, max_attempts=3, base_delay_s=1)
    assert decision.retry and decision.delay_s >= 30
