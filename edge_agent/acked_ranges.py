"""Acknowledged seqs not yet deleted from the buffer file, looked up by bisection.

A drain acknowledges millions of records in a few thousand ranges that merge as they come; the sender
leaves them out of every read until the blocks holding them are deleted. A linear scan of every
range for every record cost most of the sender's time.
"""

from __future__ import annotations

import bisect


class AckedRanges:
    """Ascending disjoint inclusive ranges of seqs, merged as they are added."""

    __slots__ = ("_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, first: int, last: int) -> int:
        """Add first..last; how many of its seqs were not in already."""
        lo = bisect.bisect_left(self._ends, first - 1)  # the first range ending at or after first - 1
        hi = bisect.bisect_right(self._starts, last + 1)  # past the last range starting by last + 1
        known = sum(max(0, min(last, self._ends[i]) - max(first, self._starts[i]) + 1) for i in range(lo, hi))
        new = last - first + 1 - known
        if lo < hi:
            first, last = min(first, self._starts[lo]), max(last, self._ends[hi - 1])
        self._starts[lo:hi] = [first]
        self._ends[lo:hi] = [last]
        return new

    def __contains__(self, seq: int) -> bool:
        i = bisect.bisect_right(self._starts, seq) - 1
        return i >= 0 and self._ends[i] >= seq

    def overlaps(self, first: int, last: int) -> bool:
        """Whether any seq of first..last is in."""
        i = bisect.bisect_left(self._ends, first)  # the first range ending at or after first
        return i < len(self._starts) and self._starts[i] <= last

    def covers(self, first: int, last: int) -> bool:
        """Whether every seq of first..last is in."""
        i = bisect.bisect_right(self._starts, first) - 1
        return i >= 0 and self._ends[i] >= last

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def drop_below(self, seq: int) -> None:
        """Forget the ranges wholly below ``seq`` (nothing there is left to leave out)."""
        cut = bisect.bisect_left(self._ends, seq)
        del self._starts[:cut], self._ends[:cut]

    def copy(self) -> AckedRanges:
        other = AckedRanges()
        other._starts, other._ends = list(self._starts), list(self._ends)
        return other

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
