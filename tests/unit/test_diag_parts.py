"""The pure parts of `cityedge diag`: its MQTT CONNECT, /proc addresses, the verdicts it gives on the
buffer, the clock and the service, the alarms it reads from the agent's settings, and a buffer read
that never leaves a file behind."""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from pathlib import Path

import pytest

from edge_agent.buffer import Buffer
from edge_agent.clock_sync import BUILD_FLOOR_MS
from edge_agent.diag.broker_check import _proc_addresses, connect_packet
from edge_agent.diag.buffer_state import (
    BufferReadError,
    BufferState,
    active_alarms,
    buffer_check,
    read_buffer_state,
)
from edge_agent.diag.host import AgentPresence, clock_check, service_check
from edge_agent.diag.model import Status

NOW = BUILD_FLOOR_MS + 86_400_000


def test_connect_packet_is_mqtt_3_1_1_with_the_credentials_given() -> None:
    packet = connect_packet("cab-1", "cab-1", "pw")
    assert packet[0] == 0x10 and packet[1] == len(packet) - 2
    body = packet[2:]
    assert body[:6] == b"\x00\x04MQTT" and body[6] == 4
    assert body[7] == 0xC2  # user, password, clean session
    assert struct.unpack("!H", body[8:10]) == (10,)
    assert body[10:] == b"\x00\x05cab-1\x00\x05cab-1\x00\x02pw"
    anonymous = connect_packet("cityedge-diag-1", None, None)
    assert anonymous[2 + 7] == 0x02 and anonymous.endswith(b"\x00\x0fcityedge-diag-1")


def test_a_long_connect_has_a_multi_byte_remaining_length() -> None:
    packet = connect_packet("c", "u", "p" * 200)
    size = len(packet) - 3
    assert packet[1] == (size % 128) | 0x80 and packet[2] == size // 128


def test_proc_addresses_are_written_as_the_kernel_writes_them() -> None:
    assert "0100007F:075B" in _proc_addresses("127.0.0.1", 1883)
    assert "0000000000000000FFFF00000100007F:075B" in _proc_addresses("127.0.0.1", 1883)
    assert _proc_addresses("::1", 8883) == {"00000000000000000000000001000000:22B3"}


def test_active_alarms_come_from_the_agents_settings() -> None:
    meta = {
        "setting.alarms.lc1": "lamp_failure,door_open",
        "setting.alarms.lc2": "",
        "setting.device_lost.lc3": "1",
        "setting.device_lost.lc4": "0",
        "setting.alarm.clock_unsynchronised": "1",
        "stream": "ab",
    }
    assert active_alarms(meta) == [
        "agent: clock_unsynchronised",
        "lc1: lamp_failure",
        "lc1: door_open",
        "lc3: device lost (does not answer)",
    ]


def state(**changes: object) -> BufferState:
    base = BufferState(
        path=Path("buffer.db"),
        size_bytes=2_000_000,
        records=100,
        oldest_seq=5,
        oldest_ts=NOW - 30_000,
        newest_seq=104,
        last_ack_ts=NOW - 10_000,
        last_ack_seq=4,
        stream="ab",
        boot_count=3,
        opened="read-only (an agent has it open)",
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_the_buffer_verdicts() -> None:
    draining = buffer_check(state(), NOW)
    assert draining.status is Status.OK
    assert draining.summary == (
        "100 records waiting (2.0 MB on disk); oldest seq 5, taken 30 s ago;"
        " last ack 10 s ago (through seq 4)"
    )
    assert draining.facts["oldest_age_s"] == 30.0 and draining.facts["last_ack_age_s"] == 10.0
    stuck = buffer_check(state(oldest_ts=NOW - 3 * 3_600_000, last_ack_ts=None), NOW)
    assert stuck.status is Status.WARN
    assert stuck.summary.startswith("not draining: ") and "3.0 h ago" in stuck.summary
    assert "never acknowledged by central" in stuck.summary
    empty = buffer_check(state(records=0, oldest_seq=None, oldest_ts=None), NOW)
    assert empty.status is Status.OK and empty.summary.startswith("empty: central holds every record")
    missing = buffer_check(BufferReadError(Path("b.db"), "no such file"), NOW)
    assert (missing.status, missing.summary) == (Status.FAIL, "no such file")


def test_the_clock_verdicts() -> None:
    def judged(now: int, kernel: bool | None, timesyncd: bool | None = None) -> Status:
        return clock_check(now, kernel=lambda: kernel, timesyncd=lambda: timesyncd).status

    assert judged(NOW, True) is Status.OK
    assert judged(NOW, False, True) is Status.OK  # timesyncd set it since boot
    assert judged(NOW, False) is Status.FAIL
    assert judged(NOW, None) is Status.WARN
    assert judged(0, True) is Status.FAIL  # 1970: whatever NTP says


def test_the_service_verdicts() -> None:
    def presence(state: str | None, pids: tuple[int, ...] = (), hidden: int = 0) -> AgentPresence:
        return AgentPresence(systemd=state is not None, service_state=state, pids=pids, hidden=hidden)

    assert service_check(presence("active", (42,))).status is Status.OK
    assert service_check(presence("failed")).status is Status.FAIL
    assert service_check(presence("inactive")).status is Status.WARN
    none = service_check(presence(None, (42,)))
    assert none.status is Status.SKIP and none.summary.startswith(
        "no systemd on this machine; agent process 42"
    )
    assert presence(None, hidden=3).running is None
    assert presence("inactive", hidden=3).running is None  # one run by hand may be hidden
    assert presence("inactive").running is False
    assert presence("activating").running is True


async def test_reading_a_stopped_agents_buffer_leaves_no_file_behind(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    buffer = Buffer(path, max_bytes=1 << 20, clock_ms=lambda: NOW)
    async with buffer:
        buffer.append_reading("lc1/power_w", NOW - 5000, 12.5)
        buffer.append_event(
            ts=NOW - 4000,
            source="lc1",
            kind="alarm_raised",
            severity="alarm",
            message="lc1: lamp failure raised",
            data={"alarm": "lamp_failure", "device": "lc1"},
        )
        buffer.stage_setting("alarms.lc1", "lamp_failure")
        await buffer.flush()
    assert os.listdir(tmp_path) == ["buffer.db"]  # a clean stop leaves no write-ahead log
    read = read_buffer_state(path)
    assert os.listdir(tmp_path) == ["buffer.db"]  # nor does diag
    assert (read.records, read.oldest_seq, read.oldest_ts) == (2, 1, NOW - 5000)
    assert read.active_alarms == ["lc1: lamp_failure"]
    assert [e.kind for e in read.events] == ["alarm_raised"]
    assert read.opened == "immutable (nothing has it open)"


async def test_reading_a_live_buffer_takes_no_lock_the_writer_waits_for(tmp_path: Path) -> None:
    path = tmp_path / "buffer.db"
    buffer = Buffer(path, max_bytes=1 << 20, clock_ms=lambda: NOW)
    async with buffer:
        buffer.append_reading("lc1/power_w", NOW, 1.0)
        await buffer.flush()
        reader = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM blocks").fetchone()  # a read transaction held open
        started = time.monotonic()
        for value in range(20):
            buffer.append_reading("lc1/power_w", NOW, float(value))
            await buffer.flush()
        assert time.monotonic() - started < 2.0  # commits went on as if nobody was reading
        reader.close()
        read = read_buffer_state(path)
        assert read.opened == "read-only (an agent has it open)" and read.records == 21


def test_a_file_that_is_no_buffer_is_said_so(tmp_path: Path) -> None:
    junk = tmp_path / "buffer.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BufferReadError, match="not a readable buffer"):
        read_buffer_state(junk)
