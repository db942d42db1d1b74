"""A small city with known KPI answers, written through a real store's ingest (rollups and alarm
episodes as ingest keeps them), for the KPI report and the open data.

Two towns, two days (2024-05-01 and 02, UTC):

cab-a (Dijon; rated 2000 W, historical baseline 20 kWh/day)
    lc1 (modbus-tcp, lighting)   energy counter with a reset and a 24 h gap; relay lit 6.125 h on
                                 May 1 and 5 h on May 2 (no relay data after 05:00 on May 2)
    tc1 (opcua, traffic)         mode "normal" every quarter, but 10:00-11:00 on May 1 it is lost
                                 (device_lost episode, bad readings)
    cam1 (onvif, camera)         reachable every quarter; its stream URL (with credentials) as a value
    a door alarm raised twice on May 1: 10 s and 18 s, the first acknowledged after 120 s
cab-b (Chenôve; historical baseline 3 kWh/day) m (modbus-rtu): 4800 Wh over the 48 h, read at both ends.

Secrets planted where a careless dataset would leak them: the registry's broker hash and label (an
address), the camera's URL, the operator's name.
"""

from __future__ import annotations

from collections.abc import Sequence

from central.store import Store
from central.store.rows import EpisodeQuery, NewNote, ReceivedBatch, ReceivedStatus, RegistryEntry
from protocols.fleet import (
    PROTOCOL_VERSION,
    DeviceInfo,
    Event,
    Reading,
    Status,
    decode_data_batch,
    encode,
    encode_data_batch,
)
from protocols.fleet.messages import Scalar
from protocols.quality import Quality

MIN = 60_000
QUARTER = 15 * MIN
HOUR = 3_600_000
DAY = 24 * HOUR
MAY1 = 1_714_521_600_000  # 2024-05-01T00:00:00Z
NOW = MAY1 + 2 * DAY + 12 * HOUR  # 2024-05-03T12:00:00Z
T10 = MAY1 + 10 * HOUR

BROKER_HASH = '{"salt":"c2VjcmV0LXNhbHQ=","password":"PBKDF2-HASH-VALUE-x9","iterations":101}'
LABEL = "12 rue de la Liberte"
CAMERA_URL = "rtsp://viewer:s3cret-pw@10.1.2.3:554/stream1"
OPERATOR = "alice.ops"
SECRETS = (BROKER_HASH, "PBKDF2-HASH-VALUE-x9", LABEL, CAMERA_URL, "s3cret-pw", "10.1.2.3", OPERATOR)


class Feed:
    """One cabinet's records with consecutive seqs on one stream, written as an agent's batch would be."""

    def __init__(self, store: Store, cabinet: str) -> None:
        self.store, self.cabinet, self.seq = store, cabinet, 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def reading(self, point: str, ts: int, value: Scalar, quality: Quality = Quality.GOOD) -> Reading:
        reason = None if quality == Quality.GOOD else "timeout"
        return Reading(seq=self._next(), point=point, ts=ts, value=value, quality=quality, reason=reason)

    def event(self, kind: str, ts: int, *, source: str, severity: str = "info", **data: Scalar) -> Event:
        return Event(
            seq=self._next(), ts=ts, source=source, kind=kind, severity=severity, message=kind, data=data
        )  # type: ignore[arg-type]

    async def birth(self, inventory: Sequence[DeviceInfo]) -> None:
        status = Status(
            v=PROTOCOL_VERSION, cabinet=self.cabinet, online=True, ts=MAY1, inventory=list(inventory)
        )
        await self.store.write([], [ReceivedStatus(status, MAY1)])

    async def send(self, readings: Sequence[Reading], events: Sequence[Event] = ()) -> None:
        seqs = [r.seq for r in readings] + [e.seq for e in events]
        payload = encode_data_batch(
            cabinet=self.cabinet,
            stream="0123abcd",
            first=min(seqs),
            last=max(seqs),
            readings=[encode(r) for r in readings],
            events=[encode(e) for e in events],
        )
        batch = ReceivedBatch(decode_data_batch(payload), NOW, f"cityedge/{self.cabinet}/data", payload)
        [outcome] = await self.store.write([batch])
        assert outcome.unstorable is None and outcome.new == len(seqs), outcome


def _entry(cabinet: str, town: str, lat: float, lon: float, **figures: float | None) -> RegistryEntry:
    return RegistryEntry(
        cabinet=cabinet,
        town=town,
        label=LABEL,
        latitude=lat,
        longitude=lon,
        rated_power_w=figures.get("rated_power_w"),
        baseline_kwh_per_day=figures.get("baseline_kwh_per_day"),
        broker_hash=BROKER_HASH,
        created_ms=MAY1,
        updated_ms=MAY1,
        revoked_ms=None,
    )


async def build_city(store: Store) -> None:
    await store.put_registry(
        _entry("cab-a", "Dijon", 47.3220, 5.0415, rated_power_w=2000.0, baseline_kwh_per_day=20.0)
    )
    await store.put_registry(_entry("cab-b", "Chenôve", 47.2900, 5.0050, baseline_kwh_per_day=3.0))

    a = Feed(store, "cab-a")
    await a.birth(
        [
            DeviceInfo(
                name="lc1",
                driver="modbus-tcp",
                profile="lighting-single-circuit",
                points=["relay", "energy_wh"],
            ),
            DeviceInfo(
                name="tc1", driver="opcua", profile="traffic-controller-generic", points=["mode", "fault"]
            ),
            DeviceInfo(name="cam1", driver="onvif", points=["reachable", "stream_uri"]),
        ]
    )
    counter = [
        (MAY1, 1000.0),
        (MAY1 + 1 * HOUR, 1500.0),
        (MAY1 + 2 * HOUR, 2000.0),
        (MAY1 + 3 * HOUR, 200.0),  # reset
        (MAY1 + 4 * HOUR, 700.0),
        (MAY1 + DAY + 4 * HOUR, 12_700.0),  # after a 24 h gap
        (MAY1 + DAY + 5 * HOUR, 13_200.0),
    ]
    readings = [a.reading("lc1/energy_wh", ts, v) for ts, v in counter]
    readings += [a.reading("lc1/relay", MAY1 + q * QUARTER, q < 25) for q in range(96)]
    readings.append(a.reading("lc1/relay", MAY1 + 24 * QUARTER + 7 * MIN, False))
    readings += [a.reading("lc1/relay", MAY1 + DAY + q * QUARTER, True) for q in range(20)]
    lost = range(40, 44)  # the quarters of 10:00-11:00 on May 1
    for q in range(192):
        ts = MAY1 + q * QUARTER + MIN
        if q in lost:
            readings += [a.reading(f"tc1/{p}", ts, None, Quality.BAD) for p in ("mode", "fault")]
        else:
            readings += [a.reading("tc1/mode", ts, "normal"), a.reading("tc1/fault", ts, False)]
        readings += [a.reading("cam1/reachable", ts, True), a.reading("cam1/stream_uri", ts, CAMERA_URL)]
    events = [
        a.event("alarm_raised", T10, source="lc1", severity="warning", alarm="door_open", device="lc1"),
        a.event("alarm_cleared", T10 + 10_000, source="lc1", alarm="door_open", device="lc1"),
        a.event(
            "alarm_raised", T10 + 300_000, source="lc1", severity="warning", alarm="door_open", device="lc1"
        ),
        a.event("alarm_cleared", T10 + 318_000, source="lc1", alarm="door_open", device="lc1"),
        a.event("device_lost", T10, source="tc1", severity="alarm", reason="timeout"),
        a.event("device_back", T10 + HOUR, source="tc1"),
    ]
    await a.send(readings, events)

    b = Feed(store, "cab-b")
    await b.birth([DeviceInfo(name="m", driver="modbus-rtu", points=["import_energy_wh"])])
    await b.send(
        [b.reading("m/import_energy_wh", MAY1, 0.0), b.reading("m/import_energy_wh", MAY1 + 2 * DAY, 4800.0)]
    )

    door = sorted(
        (e for e in await store.episodes(EpisodeQuery(limit=100)) if e.alarm == "door_open"),
        key=lambda e: e.raised_ms,
    )
    assert [e.raised_ms for e in door] == [T10, T10 + 300_000]
    acked = await store.add_note(
        door[0].id, NewNote(kind="acknowledge", author=OPERATOR, ts_ms=T10 + 120_000)
    )
    assert acked is not None and acked.acked_ms == T10 + 120_000
