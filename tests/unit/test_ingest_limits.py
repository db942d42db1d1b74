"""Per-topic token buckets: a topic over its rate is refused, sampled, and the others are untouched."""

from __future__ import annotations

import pytest

from central.ingest_limits import OncePerInterval, RateLimit, TopicLimits, TopicRateLimiter

LIMITS = TopicLimits(
    messages=RateLimit(rate=10, burst=20), bytes=RateLimit(rate=1000, burst=5000), sample_every_s=60
)


def test_a_burst_passes_then_the_sustained_rate() -> None:
    limiter = TopicRateLimiter(LIMITS)
    allowed = [limiter.check("cityedge/a/data", 10, 0.0).allowed for _ in range(30)]
    assert allowed == [True] * 20 + [False] * 10
    # One second later: ten more messages' worth of tokens.
    allowed = [limiter.check("cityedge/a/data", 10, 1.0).allowed for _ in range(15)]
    assert allowed == [True] * 10 + [False] * 5
    assert limiter.refused == 15


def test_bytes_are_limited_too() -> None:
    limiter = TopicRateLimiter(LIMITS)
    assert limiter.check("t", 4000, 0.0).allowed
    assert not limiter.check("t", 4000, 0.0).allowed
    assert limiter.check("t", 4000, 3.0).allowed


def test_a_message_larger_than_the_burst_is_still_allowed_when_the_bucket_is_full() -> None:
    limiter = TopicRateLimiter(LIMITS)
    assert limiter.check("t", 10_000, 0.0).allowed


def test_one_flooding_topic_does_not_touch_another() -> None:
    limiter = TopicRateLimiter(LIMITS)
    for _ in range(1000):
        limiter.check("cityedge/flood/data", 10, 0.0)
    assert limiter.check("cityedge/good/data", 10, 0.0).allowed
    assert limiter.top_refused() == [("cityedge/flood/data", 980)]


def test_one_refusal_per_interval_is_sampled() -> None:
    limiter = TopicRateLimiter(LIMITS)
    verdicts = [limiter.check("t", 1, 0.0) for _ in range(100)]
    assert sum(v.sample for v in verdicts) == 1
    later = [limiter.check("t", 1, 61.0) for _ in range(100)]
    assert sum(v.sample for v in later) == 1


def test_the_topics_tracked_are_bounded() -> None:
    limiter = TopicRateLimiter(TopicLimits(max_topics=100))
    for i in range(1000):
        limiter.check(f"cityedge/c{i}/data", 1, 0.0)
    assert len(limiter._buckets) == 100


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimit(rate=0, burst=1)


def test_once_per_interval() -> None:
    once = OncePerInterval(interval_ms=1000, max_keys=2)
    assert [once.first_in_interval("a", t) for t in (0, 10, 999, 1000)] == [True, False, False, True]
    assert once.first_in_interval("b", 0)
    assert once.first_in_interval("c", 0)  # past max_keys: forgotten, never unbounded
    assert len(once._last) <= 2


def test_records_are_limited_after_decoding() -> None:
    limits = TopicLimits(records=RateLimit(rate=1000, burst=5000))
    limiter = TopicRateLimiter(limits)
    assert limiter.check_records("t", 5000, 0.0).allowed
    assert not limiter.check_records("t", 1000, 0.0).allowed
    assert limiter.check_records("t", 1000, 1.0).allowed
    assert limiter.check_records("other", 5000, 1.0).allowed
    # A batch larger than the burst still passes once the bucket is full, never starved for ever.
    assert limiter.check_records("t", 10_000, 100.0).allowed
