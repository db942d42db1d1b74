"""A controller that misbehaves towards the cabinet: an enormous response, a refused password met by
polls and a subscription, a value flapping faster than the publishing interval. Real sockets against
the simulator."""

from __future__ import annotations

import asyncio
import itertools
import logging
import struct
import time
from pathlib import Path

import pytest
from asyncua import ua
from asyncua.common.connection import TransportLimits
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import uatcp_to_binary

from protocols.driver import PointValue
from protocols.errors import DeviceException, DriverError
from protocols.opcua.driver import OpcuaDriver, build
from protocols.opcua.errors import AccessDenied
from protocols.opcua.session import MAX_MESSAGE_BYTES
from protocols.opcua.simulator import TrafficControllerSimulator
from protocols.quality import Quality
from protocols.testing import wait_until
from tests.integration.test_opcua_driver import TICK_S, context, device, password_file

pytestmark = pytest.mark.integration


async def test_a_response_past_the_limit_is_refused_and_the_next_read_recovers(tmp_path: Path) -> None:
    async with TrafficControllerSimulator(tick_s=TICK_S) as sim:
        opcua = build(device(sim.endpoint, timeout_s=5.0), context(tmp_path))
        await opcua.connect()
        # Twice the limit: asyncua's server sends it whatever the client's Hello asked for.
        await sim.set_raw(
            "Controller.Phase", ua.Variant("x" * (2 * MAX_MESSAGE_BYTES), ua.VariantType.String)
        )

        with pytest.raises(DeviceException) as raised:
            await opcua.read()

        assert raised.value.code in {StatusCodes.BadRequestTooLarge, StatusCodes.BadResponseTooLarge}
        assert "past the 4 MiB limit while reading" in str(raised.value)
        await sim.set_raw("Controller.Phase", None)
        values = {v.quantity: v for v in await read_once_reconnected(opcua)}
        assert values["phase"].quality == Quality.GOOD
        await opcua.close()


async def test_a_server_acknowledging_no_limits_cannot_switch_the_cap_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hostile server answers the client's Hello with "no limits" (0): the cap stays ours."""
    hello = TransportLimits.create_acknowledge_and_set_limits

    def unlimited(self: TransportLimits, msg: ua.Hello) -> ua.Acknowledge:
        ack = hello(self, msg)
        ack.MaxMessageSize, ack.MaxChunkCount = 0, 0
        return ack

    monkeypatch.setattr(TransportLimits, "create_acknowledge_and_set_limits", unlimited)
    async with TrafficControllerSimulator(tick_s=TICK_S) as sim:
        opcua = build(device(sim.endpoint, timeout_s=5.0), context(tmp_path))
        await opcua.connect()
        await sim.set_raw(
            "Controller.Phase", ua.Variant("x" * (2 * MAX_MESSAGE_BYTES), ua.VariantType.String)
        )
        with pytest.raises(DeviceException) as raised:
            await opcua.read()
        assert "past the 4 MiB limit while reading" in str(raised.value)
        await opcua.close()


async def read_once_reconnected(opcua: OpcuaDriver) -> list[PointValue]:
    """A read that succeeds once the driver has opened a new session (after its reconnect backoff)."""
    result: list[PointValue] = []

    async def attempt() -> bool:
        try:
            result[:] = await opcua.read()
        except DriverError:
            return False
        return True

    await wait_until(attempt, timeout=10.0, what="a read on a new session")
    return result


async def test_a_refused_password_is_tried_once_per_auth_window_whoever_asks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="protocols.opcua.driver")
    async with TrafficControllerSimulator(tick_s=TICK_S, username="ops", password="right-one") as secured:
        wrong = device(
            secured.endpoint,
            username="ops",
            password_file=password_file(tmp_path, "wrong-one"),
            auth_retry_min_s=10.0,  # the floor; the reconnect backoff (0.1 to 0.5 s) is far shorter
            auth_retry_max_s=60.0,
        )
        opcua = build(wrong, context(tmp_path))
        with pytest.raises(AccessDenied):
            await opcua.connect()

        async def subscribe() -> None:
            async for _ in opcua.changes():
                pass

        subscriber = asyncio.create_task(subscribe())

        def subscriber_refused() -> int:
            return sum("subscribing again" in r.getMessage() for r in caplog.records)

        # Longer than the reconnect backoff's maximum, several times over, and polls meanwhile.
        started = time.monotonic()
        await wait_until(lambda: subscriber_refused() >= 4, timeout=10.0, what="the subscriber to retry")
        for _ in range(20):
            with pytest.raises(AccessDenied):
                await opcua.read()
        assert time.monotonic() - started < 10.0  # all within the first auth window

        assert secured.refused_logins == 1
        refusals = [
            r for r in caplog.records if r.levelno >= logging.WARNING and "refused user" in r.getMessage()
        ]
        assert len(refusals) == 1
        assert "not logging in again for" in refusals[0].getMessage()
        assert "wrong-one" not in caplog.text
        await opcua.close()
        await asyncio.wait_for(subscriber, timeout=5.0)


async def test_a_flapping_value_yields_at_most_one_batch_per_publishing_interval(tmp_path: Path) -> None:
    async with TrafficControllerSimulator(tick_s=TICK_S) as sim:
        opcua = build(device(sim.endpoint, publishing_interval_ms=100), context(tmp_path))
        await opcua.connect()
        batches: list[tuple[float, list[PointValue]]] = []

        async def collect() -> None:
            async for batch in opcua.changes():
                batches.append((time.monotonic(), batch))

        collector = asyncio.create_task(collect())
        await wait_until(lambda: bool(batches), what="the first values of the subscription")
        first = len(batches)

        flapped = 0
        started = time.monotonic()
        while time.monotonic() - started < 2.0:  # a fault bit flapping every 2 ms for 2 s
            await sim.set_fault(flapped % 2 == 0)
            flapped += 1
            await asyncio.sleep(0.002)
        await sim.set_fault(True)
        elapsed = time.monotonic() - started

        def fault_is(value: bool) -> bool:
            found = [v.value for _, batch in batches for v in batch if v.quantity == "fault"]
            return bool(found) and found[-1] is value

        await wait_until(lambda: fault_is(True), what="the fault's last value")
        flapping = batches[first:]
        assert flapped > 200
        # One batch per 100 ms interval (and one more for the last change, after the flapping).
        assert len(flapping) <= elapsed / 0.1 + 2
        times = [at for at, _ in flapping]
        assert all(b - a >= 0.09 for a, b in itertools.pairwise(times))
        for _, batch in flapping:
            quantities = [v.quantity for v in batch]
            assert len(quantities) == len(set(quantities))  # the latest value of each point, once
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await opcua.close()


async def test_a_server_announcing_a_huge_chunk_is_cut_off_before_it_is_buffered(tmp_path: Path) -> None:
    """A hostile server (not the simulator: asyncua's server never sends such a chunk) answers the
    Hello, then announces a 1 GiB chunk and streams it; the client must not wait to hold it whole."""
    sent = 0
    cut_off = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await reader.read(65536)  # the Hello
        ack = ua.Acknowledge()
        ack.ReceiveBufferSize = ack.SendBufferSize = 65535
        writer.write(uatcp_to_binary(ua.MessageType.Acknowledge, ack))
        await reader.read(65536)  # OpenSecureChannel
        writer.write(b"OPNF" + struct.pack("<I", 1 << 30))
        piece = b"\0" * 65536
        try:
            while sent < 64 * 1024 * 1024:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
        except (ConnectionError, OSError):
            cut_off.set()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        opcua = build(device(f"opc.tcp://127.0.0.1:{port}", timeout_s=5.0), context(tmp_path))
        with pytest.raises(DeviceException) as raised:
            await opcua.connect()
        await wait_until(cut_off.is_set, what="the client to drop the connection")
        await opcua.close()

    assert raised.value.code == StatusCodes.BadResponseTooLarge
    assert sent < 8 * 1024 * 1024  # dropped within a few socket buffers, not after the whole chunk
