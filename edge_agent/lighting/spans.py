"""Sorted, non-overlapping half-open time spans ``[start, end)`` carrying a value, and a lookup by instant."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Span(Generic[T]):
    start: datetime
    end: datetime
    value: T


class Spans(Generic[T]):
    """Spans sorted by start; empty ones are dropped. The caller guarantees they do not overlap."""

    def __init__(self, spans: Iterable[Span[T]]) -> None:
        self._spans = sorted((s for s in spans if s.end > s.start), key=lambda s: s.start)
        self._starts = [s.start for s in self._spans]

    def at(self, instant: datetime) -> T | None:
        """The value of the span containing ``instant``, or None."""
        index = bisect_right(self._starts, instant) - 1
        if index >= 0 and instant < self._spans[index].end:
            return self._spans[index].value
        return None

    def edges(self) -> Iterator[datetime]:
        for span in self._spans:
            yield span.start
            yield span.end


def union(intervals: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Merge overlapping or touching intervals; empty ones vanish."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
