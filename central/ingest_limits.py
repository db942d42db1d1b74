"""Per-topic rate limits, checked before a message is decoded: a flooding cabinet costs the others little.

Each topic (so each cabinet, each kind) has three token buckets: messages and bytes, checked before
a message is decoded, and records, checked once a batch is decoded (a flood of valid batches costs
the store, not the decoder). A message over any is refused at the cost of a dict lookup and a few
float operations, counted, and one in ``sample_every_s`` per topic is kept in quarantine so an
operator can see what the flood was. A refused data batch is not lost: it is never acknowledged, so
the edge sends it again later.

The defaults leave a legitimate cabinet room to drain a day of backlog in under a minute (200,000
records and 16 MiB a second, in batches of up to 5,000) and a flooder no room to matter: what it sends
within them is written in its turn, one batch per cabinet per group (``central.ingest``), never ahead
of the other cabinets.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``rate`` per second sustained, ``burst`` at once."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.rate > 0 and self.burst >= 1):
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got {self}")


@dataclass(frozen=True, slots=True)
class TopicLimits:
    messages: RateLimit = RateLimit(rate=50.0, burst=500.0)
    bytes: RateLimit = RateLimit(rate=16 * 1024 * 1024, burst=32 * 1024 * 1024)
    records: RateLimit = RateLimit(rate=200_000.0, burst=400_000.0)
    # At most this many topics are tracked; the least recently seen are forgotten first (their
    # buckets were full anyway unless they flood, and a flooder is seen often).
    max_topics: int = 100_000
    sample_every_s: float = 60.0


class _Bucket:
    __slots__ = ("bytes", "last_s", "messages", "records", "records_s", "refused", "sampled_s")

    def __init__(self, limits: TopicLimits, now_s: float) -> None:
        self.messages = limits.messages.burst
        self.bytes = limits.bytes.burst
        self.records = limits.records.burst
        self.last_s = now_s
        self.records_s = now_s
        self.refused = 0
        self.sampled_s = float("-inf")


class Verdict:
    """What to do with one message: ``allowed``, else refused and maybe ``sample``d into quarantine."""

    __slots__ = ("allowed", "sample")

    def __init__(self, allowed: bool, sample: bool) -> None:
        self.allowed = allowed
        self.sample = sample


ALLOWED = Verdict(True, False)
_REFUSED = Verdict(False, False)
_REFUSED_SAMPLED = Verdict(False, True)


class TopicRateLimiter:
    """Token buckets by topic. Not thread-safe: the ingest loop owns it."""

    def __init__(self, limits: TopicLimits | None = None) -> None:
        self.limits = limits or TopicLimits()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.refused = 0

    def check(self, topic: str, size: int, now_s: float) -> Verdict:
        limits = self.limits
        bucket = self._buckets.get(topic)
        if bucket is None:
            bucket = self._buckets[topic] = _Bucket(limits, now_s)
            if len(self._buckets) > limits.max_topics:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(topic)
            elapsed = now_s - bucket.last_s
            if elapsed > 0:
                bucket.last_s = now_s
                bucket.messages = min(limits.messages.burst, bucket.messages + elapsed * limits.messages.rate)
                bucket.bytes = min(limits.bytes.burst, bucket.bytes + elapsed * limits.bytes.rate)
        if bucket.messages >= 1 and bucket.bytes >= min(size, limits.bytes.burst):
            bucket.messages -= 1
            bucket.bytes -= size
            return ALLOWED
        return self._refuse(bucket, now_s)

    def check_records(self, topic: str, count: int, now_s: float) -> Verdict:
        """After decoding: may this topic store ``count`` more records now?"""
        limits = self.limits
        bucket = self._buckets.get(topic)
        if bucket is None:
            bucket = self._buckets[topic] = _Bucket(limits, now_s)
        elapsed = now_s - bucket.records_s
        if elapsed > 0:
            bucket.records_s = now_s
            bucket.records = min(limits.records.burst, bucket.records + elapsed * limits.records.rate)
        if bucket.records >= min(count, limits.records.burst):
            bucket.records -= count
            return ALLOWED
        return self._refuse(bucket, now_s)

    def _refuse(self, bucket: _Bucket, now_s: float) -> Verdict:
        bucket.refused += 1
        self.refused += 1
        if now_s - bucket.sampled_s >= self.limits.sample_every_s:
            bucket.sampled_s = now_s
            return _REFUSED_SAMPLED
        return _REFUSED

    def top_refused(self, n: int = 10) -> list[tuple[str, int]]:
        """The topics refused most, for the health view."""
        ranked = sorted(((t, b.refused) for t, b in self._buckets.items() if b.refused), key=lambda x: -x[1])
        return ranked[:n]


class OncePerInterval:
    """True for the first occurrence of a key in each interval (to log a flood once, not each time)."""

    def __init__(self, *, interval_ms: int, max_keys: int = 10_000) -> None:
        self.interval_ms = interval_ms
        self.max_keys = max_keys
        self._last: dict[object, int] = {}

    def first_in_interval(self, key: object, now_ms: int) -> bool:
        last = self._last.get(key)
        if last is not None and now_ms - last < self.interval_ms:
            return False
        if len(self._last) >= self.max_keys:
            self._last.clear()  # forgetting costs at most one more log line per key
        self._last[key] = now_ms
        return True
