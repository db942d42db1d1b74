"""The pairing of alarm marks into episodes and the plan that reconciles a window (pure rules)."""

from __future__ import annotations

from central.store.episodes import EpisodeFields, Mark, StoredEpisode, fields_of, pair, plan


def mark(seq: int, raises: bool, ts: int | None = None, stream: int = 1) -> Mark:
    return Mark(stream, seq, raises, seq * 1000 if ts is None else ts, "alarm", f"m{seq}")


def test_a_raise_opens_the_first_clear_after_closes_and_stray_clears_close_nothing() -> None:
    marks = [mark(1, False), mark(2, True), mark(3, True), mark(4, False), mark(5, False), mark(6, True)]
    assert [(s.raised.seq, s.cleared.seq if s.cleared else None) for s in pair(marks)] == [(2, 4), (6, None)]
    # The order is (stream, seq), never the stamp; a clear is never dated before its raise.
    later_stream = mark(1, True, ts=5_000, stream=2)
    [span] = pair([later_stream, mark(9, False, ts=90_000, stream=1)])
    assert (span.raised, span.cleared) == (later_stream, None)
    [closed] = pair([mark(1, True, ts=50_000), mark(2, False, ts=10_000)])
    assert fields_of(closed).cleared_ms == 50_000


def test_two_stored_episodes_of_one_span_keep_the_older_with_both_acknowledgement_and_notes() -> None:
    marks = [mark(1, True), mark(3, True), mark(5, False)]
    old = fields_of(pair([mark(1, True)])[0])
    newer = fields_of(pair([mark(3, True)])[0])
    stored = [
        StoredEpisode(7, newer, acked_ms=100, acked_by="bob", assigned_to="crew 1", assigned_ms=300),
        StoredEpisode(4, old, acked_ms=200, acked_by="alice", assigned_to=None, assigned_ms=None),
    ]
    done = plan(marks, stored)
    assert (done.moves, done.deletes, done.inserts) == (((7, 4),), (7,), ())
    [update] = done.updates
    assert (update.id, update.acked_by, update.acked_ms, update.assigned_to) == (4, "bob", 100, "crew 1")
    assert update.fields == EpisodeFields(1, 1, 1000, "alarm", "m1", 1, 5, 5000)
    assert plan(marks, [StoredEpisode(4, update.fields, 100, "bob", "crew 1", 300)]).empty
