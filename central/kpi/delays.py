"""Intervention delays from alarm episodes: median and 90th percentile. Pure.

An episode counts when it was raised in the period. Its delays are raised -> acknowledged (an
operator's acknowledgement, central's clock) and raised -> cleared (the clearing event, the cabinet's
clock); one not yet acknowledged or cleared counts in ``episodes`` but not in that delay's figures.
A delay is never negative (clocks of cabinet and central differ by a little: below 0 counts as 0).

Percentiles are nearest-rank: the p-th percentile of n sorted delays is the one of rank ceil(p/100 x n)
(from 1): a delay that really happened, never an interpolation. The median is the 50th (for an even
n, the lower of the two middle ones).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from central.store.rows import EpisodeTimes


def nearest_rank(sorted_values: Sequence[float], p: float) -> float | None:
    """The p-th percentile (0 < p <= 100) of ascending ``sorted_values``, nearest-rank; None if empty."""
    if not 0 < p <= 100:
        raise ValueError(f"a percentile is in (0, 100], got {p}")
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(slots=True)
class DelayFigures:
    """Delays in seconds of the episodes of one group."""

    episodes: int = 0
    to_ack_s: list[float] = field(default_factory=list)
    to_clear_s: list[float] = field(default_factory=list)

    def add(self, episode: EpisodeTimes) -> None:
        self.episodes += 1
        if episode.acked_ms is not None:
            self.to_ack_s.append(max(0, episode.acked_ms - episode.raised_ms) / 1000)
        if episode.cleared_ms is not None:
            self.to_clear_s.append(max(0, episode.cleared_ms - episode.raised_ms) / 1000)

    def percentile(self, which: str, p: float) -> float | None:
        values = sorted(self.to_ack_s if which == "ack" else self.to_clear_s)
        return nearest_rank(values, p)


@dataclass(slots=True)
class DelayReport:
    total: DelayFigures
    by_severity: dict[str, DelayFigures]
    by_town: dict[str | None, DelayFigures]
    by_town_severity: dict[tuple[str | None, str], DelayFigures]


def delays(
    episodes: Sequence[EpisodeTimes], towns: Mapping[str, str | None], start_ms: int, end_ms: int
) -> DelayReport:
    """The delays of the episodes raised in [start_ms, end_ms), per severity, per town (``towns``:
    cabinet -> town, None when unregistered) and per both. An episode is counted once (its id)."""
    report = DelayReport(DelayFigures(), {}, {}, {})
    seen: set[int] = set()
    for episode in sorted(episodes, key=lambda e: (e.raised_ms, e.id)):
        if not start_ms <= episode.raised_ms < end_ms or episode.id in seen:
            continue
        seen.add(episode.id)
        town = towns.get(episode.cabinet)
        report.total.add(episode)
        report.by_severity.setdefault(episode.severity, DelayFigures()).add(episode)
        report.by_town.setdefault(town, DelayFigures()).add(episode)
        report.by_town_severity.setdefault((town, episode.severity), DelayFigures()).add(episode)
    report.by_severity = dict(sorted(report.by_severity.items()))
    report.by_town = dict(sorted(report.by_town.items(), key=lambda kv: _town_key(kv[0])))
    report.by_town_severity = dict(
        sorted(report.by_town_severity.items(), key=lambda kv: (_town_key(kv[0][0]), kv[0][1]))
    )
    return report


def _town_key(town: str | None) -> tuple[bool, str]:
    """Towns by name, the cabinets without one (not registered) last."""
    return town is None, town or ""
