"""The fleet's broker ACL and config, on a real Mosquitto: a cabinet's credentials reach only its topics.

The broker runs the production snippet (packaging/mosquitto/cityedge.conf) with its port and paths
swapped for the test's own, and the ACL file exactly as shipped (config/broker/acl.template).
"""

from __future__ import annotations

import asyncio
import getpass
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from aiomqtt import ProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from cityedge.broker import mosquitto_path
from cityedge.ports import free_port, wait_for_port
from protocols.fleet.topics import Topics, all_cabinets, shared

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BROKER_CONF = REPO / "packaging" / "mosquitto" / "cityedge.conf"
ACL_FILE = REPO / "config" / "broker" / "acl.template"
# Options of the production snippet that name its ports, certificates and files.
_SWAPPED_OPTIONS = {"listener", "certfile", "keyfile", "cafile", "tls_version", "password_file"}
_SWAPPED_OPTIONS |= {"acl_file", "persistence_location", "log_dest"}
PASSWORDS = {"central": "central-pw", "cab-a": "cab-a-pw", "cab-b": "cab-b-pw"}
A, B = Topics("cab-a"), Topics("cab-b")
WAIT_S = 5.0
MESSAGE_SIZE_LIMIT = 512 * 1024


@dataclass(frozen=True)
class AclBroker:
    port: int
    log: Path

    def client(
        self, username: str, *, password: str | None = None, protocol: ProtocolVersion | None = None
    ) -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=username,
            password=PASSWORDS[username] if password is None else password,
            protocol=protocol or ProtocolVersion.V5,
            timeout=WAIT_S,
        )


def _test_config(directory: Path, port: int) -> Path:
    lines = [
        line
        for line in BROKER_CONF.read_text().splitlines()
        if not line.split() or line.split()[0] not in _SWAPPED_OPTIONS
    ]
    lines += [
        f"listener {port} 127.0.0.1",
        f"password_file {directory / 'passwd'}",
        f"acl_file {ACL_FILE}",
        f"persistence_location {directory}/",
        f"log_dest file {directory / 'mosquitto.log'}",
        "log_type all",
        # Run as whoever runs the tests: as root, Mosquitto would otherwise switch to the mosquitto
        # user, who cannot read the test's private directory.
        f"user {getpass.getuser()}",
    ]
    config = directory / "mosquitto.conf"
    config.write_text("\n".join(lines) + "\n")
    return config


def _write_password_file(path: Path) -> None:
    """Plain ``user:password`` lines, hashed in place by ``mosquitto_passwd -U``."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed (apt-get install -y mosquitto)")
    path.write_text("".join(f"{user}:{password}\n" for user, password in PASSWORDS.items()))
    os.chmod(path, 0o600)
    subprocess.run([tool, "-U", str(path)], check=True, capture_output=True, timeout=30)


@pytest.fixture
async def acl_broker(tmp_path: Path) -> AsyncIterator[AclBroker]:
    binary = mosquitto_path()
    if binary is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto)")
    _write_password_file(tmp_path / "passwd")
    port = free_port()
    broker = AclBroker(port=port, log=tmp_path / "mosquitto.log")
    process = await asyncio.create_subprocess_exec(
        binary,
        "-c",
        str(_test_config(tmp_path, port)),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        try:
            async with asyncio.timeout(WAIT_S):
                await wait_for_port("127.0.0.1", port)
        except TimeoutError:
            process.kill()
            _, stderr = await process.communicate()
            pytest.fail(f"mosquitto did not start: {stderr.decode(errors='replace')}")
        yield broker
    finally:  # whatever happened, the broker goes with the test
        if process.returncode is None:
            process.terminate()
        await process.communicate()


@asynccontextmanager
async def _subscribed(broker: AclBroker, username: str, *topic_filters: str) -> AsyncIterator[aiomqtt.Client]:
    async with broker.client(username) as client:
        for topic_filter in topic_filters:
            await client.subscribe(topic_filter, qos=1)
        yield client


async def _receive_until(client: aiomqtt.Client, last: bytes) -> list[tuple[str, bytes]]:
    """Every message up to and including the one whose payload is ``last``."""
    received: list[tuple[str, bytes]] = []
    async with asyncio.timeout(WAIT_S):
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            received.append((message.topic.value, message.payload))
            if message.payload == last:
                return received
    raise AssertionError("unreachable: the message iterator does not end while connected")


def _codes(suback: tuple[int, ...] | list[ReasonCode]) -> list[int]:
    """SUBACK codes as ints (granted QoS, or >= 0x80 when refused), whatever the MQTT version."""
    return [code if isinstance(code, int) else code.value for code in suback]


@pytest.mark.parametrize("protocol", [ProtocolVersion.V311, ProtocolVersion.V5], ids=["mqtt3.1.1", "mqtt5"])
async def test_cabinet_publishes_on_its_own_topics_only(
    acl_broker: AclBroker, protocol: ProtocolVersion
) -> None:
    async with _subscribed(acl_broker, "central", all_cabinets("data"), all_cabinets("status")) as central:
        async with acl_broker.client("cab-a", protocol=protocol) as cabinet:
            await cabinet.publish(B.data, b"forged data", qos=1)
            await cabinet.publish(B.status, b"forged status", qos=1)
            await cabinet.publish(A.status, b"own status", qos=1, retain=True)
            await cabinet.publish(A.data, b"own data", qos=1)
        # Messages of one client arrive in the order it sent them: a forged one would come first.
        received = await _receive_until(central, b"own data")
    assert received == [(A.status, b"own status"), (A.data, b"own data")]


async def test_cabinet_cannot_publish_acks_or_commands_even_to_itself(
    acl_broker: AclBroker,
) -> None:
    async with _subscribed(acl_broker, "cab-a", A.ack, A.command) as cabinet:
        await cabinet.publish(A.ack, b"self ack", qos=1)
        await cabinet.publish(A.command, b"self command", qos=1)
        async with acl_broker.client("central") as central:
            await central.publish(A.command, b"real command", qos=1)
        received = await _receive_until(cabinet, b"real command")
    assert received == [(A.command, b"real command")]


async def test_cabinet_receives_only_its_own_acks_and_commands(acl_broker: AclBroker) -> None:
    async with acl_broker.client("cab-a") as cabinet:
        assert _codes(await cabinet.subscribe(A.ack, qos=1)) == [1]
        assert _codes(await cabinet.subscribe(A.command, qos=1)) == [1]
        # Mosquitto 2.0 grants these subscriptions too (SUBACK QoS 1), but checks every message
        # against the ACL before delivering it: what counts is what arrives.
        await cabinet.subscribe(B.command, qos=1)
        await cabinet.subscribe(all_cabinets("cmd"), qos=1)
        await cabinet.subscribe("cityedge/#", qos=1)
        async with acl_broker.client("central") as central:
            await central.publish(B.command, b"for b", qos=1)
            await central.publish(B.ack, b"ack for b", qos=1)
            await central.publish(A.ack, b"ack for a", qos=1)
            await central.publish(A.command, b"for a", qos=1)
        received = await _receive_until(cabinet, b"for a")
    # Overlapping subscriptions may deliver a message more than once: compare sets.
    assert set(received) == {(A.ack, b"ack for a"), (A.command, b"for a")}


async def test_central_ingests_through_the_shared_subscription(acl_broker: AclBroker) -> None:
    group_filter = shared("cityedge-central", all_cabinets("data"))
    async with _subscribed(acl_broker, "central", group_filter) as central:
        async with acl_broker.client("cab-a") as cabinet_a, acl_broker.client("cab-b") as cabinet_b:
            await cabinet_b.publish(B.data, b"from b", qos=1)
            await cabinet_a.publish(A.data, b"from a", qos=1)
        received = await _receive_until(central, b"from a")
    assert sorted(received) == [(A.data, b"from a"), (B.data, b"from b")]


async def test_payload_over_the_fleet_data_limit_is_dropped(acl_broker: AclBroker) -> None:
    """message_size_limit drops a payload over 512 KiB and completes the QoS 1 flow.

    MQTT 3.1.1 here: to an MQTT 5 client, Mosquitto 2.0.11 answers with a PUBACK of reason 0x95
    (not a valid PUBACK reason), which paho treats as a protocol error and disconnects.
    """
    async with _subscribed(acl_broker, "central", all_cabinets("data")) as central:
        async with acl_broker.client("cab-a", protocol=ProtocolVersion.V311) as cabinet:
            await cabinet.publish(A.data, b"x" * (MESSAGE_SIZE_LIMIT + 1), qos=1)
            await cabinet.publish(A.data, b"y" * MESSAGE_SIZE_LIMIT, qos=1)
        received = await _receive_until(central, b"y" * MESSAGE_SIZE_LIMIT)
    assert [len(payload) for _, payload in received] == [MESSAGE_SIZE_LIMIT]


@pytest.mark.parametrize(
    ("username", "password"),
    [("cab-a", "wrong"), ("cab-a", "cab-b-pw"), ("nobody", "x"), ("", "")],
    ids=["wrong password", "another cabinet's password", "unknown user", "anonymous"],
)
async def test_unknown_or_wrong_credentials_are_refused(
    acl_broker: AclBroker, username: str, password: str
) -> None:
    client = aiomqtt.Client(
        "127.0.0.1", acl_broker.port, username=username or None, password=password or None
    )
    with pytest.raises(aiomqtt.MqttError):
        async with client:
            pass
