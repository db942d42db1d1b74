"""The live feed's change detection and its bound on a slow listener. Pure parts, no I/O."""

from __future__ import annotations

import dataclasses

from central.live.feed import QUEUE_UPDATES, Listener
from central.live.watch import LAST_SEEN_STEP_MS, EpisodeWatch, SnapshotWatch, cabinet_key
from central.store.rows import AlarmEpisode, CabinetRow

CAB = CabinetRow("cab-1", True, 1_000, 1_000, "0.1.0", "h", "s", 1, 0, ())


def _episode(ident: int, updated_ms: int) -> AlarmEpisode:
    return AlarmEpisode(
        id=ident, cabinet="cab-1", device="lc1", alarm="door_open", severity="alarm", message="door open",
        raised_ms=1_000, cleared_ms=None, acked_ms=None, acked_by=None, assigned_to=None, assigned_ms=None,
        updated_ms=updated_ms,
    )  # fmt: skip


def test_the_first_poll_is_the_baseline_then_only_what_changed_is_told() -> None:
    watch = SnapshotWatch[CabinetRow](cabinet_key, lambda row: row.id)
    other = dataclasses.replace(CAB, id="cab-2")
    assert watch.changed([CAB, other]) == []
    assert watch.changed([CAB, other]) == []
    offline = dataclasses.replace(CAB, online=False)
    new = dataclasses.replace(CAB, id="cab-3")
    assert watch.changed([offline, other, new]) == [offline, new]
    # last_seen moves with every batch: told once a minute, not at each poll.
    seen = dataclasses.replace(offline, last_seen_ms=1_000 + LAST_SEEN_STEP_MS // 2)
    assert watch.changed([seen, other, new]) == []
    later = dataclasses.replace(offline, last_seen_ms=1_000 + LAST_SEEN_STEP_MS)
    assert watch.changed([later, other, new]) == [later]


def test_episodes_by_high_water_mark_none_lost_none_repeated() -> None:
    watch = EpisodeWatch(since_ms=500)
    first = [_episode(1, 600), _episode(2, 700)]
    assert watch.changed(first) == first
    assert watch.since_ms == 700
    # The store answers updated_ms >= 700 again: episode 2 is not told twice, a new one at 700 is.
    again = [_episode(2, 700), _episode(3, 700)]
    assert watch.changed(again) == [_episode(3, 700)]
    assert watch.changed([_episode(2, 700), _episode(3, 700)]) == []
    # An acknowledgement moves episode 2 on: told again, with its new time.
    assert watch.changed([_episode(2, 900)]) == [_episode(2, 900)]


def test_a_listener_that_falls_behind_gets_one_resync_not_unbounded_memory() -> None:
    listener = Listener(b"event: resync\n")
    for i in range(QUEUE_UPDATES):
        listener.offer(f"update {i}".encode())
    assert listener.queue.qsize() == QUEUE_UPDATES and listener.lagged == 0
    listener.offer(b"one too many")
    assert listener.lagged == 1
    assert [listener.queue.get_nowait() for _ in range(listener.queue.qsize())] == [b"event: resync\n"]


def test_an_episode_committed_after_a_newer_one_is_still_told_once() -> None:
    watch = EpisodeWatch(since_ms=500, slack_ms=100)
    assert watch.changed([_episode(2, 900)]) == [_episode(2, 900)]  # an acknowledgement, stamped now
    # Ingest's group commits an episode stamped with its batch's receipt, before the mark.
    assert watch.query_since_ms == 800
    assert watch.changed([_episode(3, 850), _episode(2, 900)]) == [_episode(3, 850)]
    assert watch.changed([_episode(3, 850), _episode(2, 900)]) == []
