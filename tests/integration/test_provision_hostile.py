"""``cityedge provision`` under attack: a central (or a man in the middle of http://) answering
nonsense or an endless body, a token file holding what no header may carry, table cells holding
rich markup, a cabinet folder planted as a link or left writable to others in a shared OUT, and
flags that are not UTF-8. Each gets a clear error for its cabinet or the run, never a traceback,
never the token, never a file written outside OUT/<id>."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from central.server import CentralServer
from cityedge.provision.registry_client import MAX_BODY_BYTES, CentralError, RegistryClient
from edge_agent.config import load_config
from tests.integration.test_provision import Rig, row_of, token_file, write_secret

pytestmark = pytest.mark.integration

ENTRY = (
    b'{"cabinet":"cab-1","town":"T","label":"","latitude":null,"longitude":null,"rated_power_w":null,'
    b'"baseline_kwh_per_day":null,"broker_account":false,"created_ms":1,"updated_ms":1,'
    b'"revoked_ms":null,"revoked":false}'
)
Answer = Callable[[str], tuple[int, bytes]]


class HostileCentral:
    """A real HTTP server on a free port whose answer to each method is ``answer(method)``:
    (status, body); a body of None streams spaces until the client hangs up."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> HostileCentral:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method = head.split(b" ", 1)[0].decode()
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                status, body = self.answer(method)
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                    % (status, len(body))
                )
                writer.write(body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


class EndlessCentral(HostileCentral):
    """Answers 200 with a body that never ends (a Content-Length of a terabyte)."""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            writer.write(b'Content-Length: 1000000000000\r\n\r\n{"pad": "')
            chunk = b"x" * 65536
            while True:
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()


@pytest.fixture
async def hostile() -> AsyncIterator[Callable[[Answer], HostileCentral]]:
    servers: list[HostileCentral] = []

    def make(answer: Answer) -> HostileCentral:
        server = HostileCentral(answer)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.__aexit__()


def answers(put: tuple[int, bytes], post: tuple[int, bytes] = (201, b"{}")) -> Answer:
    return lambda method: {"GET": (404, b'{"detail":"not registered"}'), "PUT": put, "POST": post}[method]


@pytest.mark.parametrize(
    "answer",
    [
        answers((201, b"not json")),
        answers((201, b"[1, 2]")),
        answers((201, b'{"outcome": "created"}')),
        answers((201, b'{"outcome": "pwned", "entry": ' + ENTRY + b"}")),
        answers((201, b'{"outcome": "created", "entry": {"broker_account": "yes"}}')),
        answers((422, b"[1, 2]")),
        answers((422, b'{"detail": [1, {"loc": 5}]}')),
    ],
)
async def test_a_central_answering_nonsense_to_a_put_is_a_central_error(
    hostile: Callable[[Answer], HostileCentral], answer: Answer
) -> None:
    async with hostile(answer) as central, RegistryClient(central.url, "ce1_x_y") as client:
        with pytest.raises(CentralError, match="registering cab-1: central"):
            await client.put("cab-1", {"town": "T"})


@pytest.mark.parametrize(
    "password",
    [
        b"5",
        b"null",
        b'"short"',
        b'"a-password-with-a\\nnewline-in-it-xxxxxxxxxxxxxxxxx"',
        b'"' + b"p" * 5000 + b'"',
    ],
)
async def test_a_password_central_could_not_have_made_is_refused(
    hostile: Callable[[Answer], HostileCentral], password: bytes
) -> None:
    body = b'{"cabinet": "cab-1", "username": "cab-1", "replaced": false, "password": ' + password + b"}"
    async with (
        hostile(answers((201, b""), (201, body))) as central,
        RegistryClient(central.url, "ce1_x_y") as client,
    ):
        with pytest.raises(CentralError, match="broker credentials of cab-1: central"):
            await client.new_password("cab-1", replace=False)


async def test_an_endless_answer_is_cut_at_the_cap() -> None:
    async with EndlessCentral(answers((0, b""))) as central, RegistryClient(central.url, "ce1_x_y") as client:
        async with asyncio.timeout(20):
            with pytest.raises(CentralError, match=f"over {MAX_BODY_BYTES} bytes"):
                await client.entry("cab-1")


async def cityedge_bytes(*args: str | bytes) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cityedge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "1000"},
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@pytest.fixture
async def rig(tmp_path: Path, central: CentralServer) -> Rig:
    return Rig(tmp_path, central, await token_file(central, tmp_path / "token"))


@pytest.mark.parametrize("secret", ["ce1_0123456789abcdef_SECRET\rPART", "ce1_0123456789abcdef_SECRÉTPART"])
async def test_a_token_no_header_may_carry_is_refused_without_showing_it(rig: Rig, secret: str) -> None:
    write_secret(rig.token, secret)
    code, out, err = await rig.provision()
    assert code == 2, out + err
    assert "Traceback" not in err and "SECR" not in out + err and "PART" not in out + err
    assert "--token-file" in err and "is not an API token" in err
    assert not rig.out.exists()


async def test_markup_in_a_cell_is_shown_as_typed(rig: Rig) -> None:
    rig.inventory.write_text(
        "id,town,devices\n"
        "cab-1,[/bold] [link=https://evil.example]Dijon[/link],\n"
        "cab-2,Talant,lc1=modbus-tcp://[/red]x:502/p\n",
        encoding="utf-8",
    )
    code, out, err = await rig.provision()
    assert code == 1, out + err
    assert "Traceback" not in err
    assert "[/bold] [link=https://evil.example]Dijon[/link]" in row_of(out, "cab-1")
    assert "[/red]x:502" in out


async def test_a_cabinet_folder_planted_as_a_link_is_refused(rig: Rig) -> None:
    elsewhere = rig.tmp / "elsewhere"
    elsewhere.mkdir()
    rig.out.mkdir()
    (rig.out / "dijon-0001").symlink_to(elsewhere)
    code, out, err = await rig.provision()
    assert code == 1, out + err
    assert "is a symbolic link" in row_of(out, "dijon-0001")
    assert list(elsewhere.iterdir()) == []
    assert (rig.out / "dijon-0002" / "broker-password").is_file()  # the others are done


async def test_a_cabinet_folder_others_may_write_or_own_is_refused(rig: Rig) -> None:
    rig.out.mkdir()
    (rig.out / "dijon-0001").mkdir(mode=0o777)
    (rig.out / "dijon-0001").chmod(0o777)
    (rig.out / "dijon-0002").mkdir(mode=0o750)
    os.chown(rig.out / "dijon-0002", 65534, 65534)  # another user's, in a shared folder
    (rig.out / "talant-0001").mkdir()
    (rig.out / "talant-0001").chmod(0o770)  # our own group's may (a umask of 002)
    code, out, err = await rig.provision()
    assert code == 1, out + err
    assert "others may write in it" in row_of(out, "dijon-0001")
    assert "belongs to another user" in row_of(out, "dijon-0002")
    assert list((rig.out / "dijon-0001").iterdir()) == list((rig.out / "dijon-0002").iterdir()) == []
    assert "created" in row_of(out, "talant-0001")
    assert {e.cabinet for e in await rig.central.store.registry()} == {"talant-0001"}


async def test_flags_that_are_not_utf8_are_refused(rig: Rig) -> None:
    args = ["--template", str(rig.template), "--out", str(rig.out), "--central", rig.central.url]
    args += ["--token-file", str(rig.token), "--cabinet", "cab-1"]
    code, out, err = await cityedge_bytes("provision", *args, "--town", b"Dijon\xff")
    assert code == 1, out + err
    assert "Traceback" not in err and "town must be text" in row_of(out, "cab-1")
    code, out, err = await cityedge_bytes(
        "provision", *args, "--town", "Dijon", "--devices", b"lc1=modbus-tcp://h\xff:502/p"
    )
    assert code == 1, out + err
    assert "Traceback" not in err and "devices must be text" in row_of(out, "cab-1")
    assert await rig.central.store.registry() == []


@pytest.mark.parametrize(
    "device",
    [
        "cam1=onvif://10.0.0.1:80?username=u&password_file={fifo}",
        "tc1=opcua://10.0.0.2:4840/traffic-controller-generic?security_policy=Basic256Sha256"
        "&security_mode=SignAndEncrypt&certificate={fifo}&private_key={fifo}",
    ],
)
async def test_a_device_file_that_is_a_fifo_fails_its_cabinet_without_hanging(rig: Rig, device: str) -> None:
    fifo = rig.tmp / "fifo"
    os.mkfifo(fifo)  # a reader blocks in open() until someone writes
    rig.inventory.write_text(
        f"id,town,devices\ncab-1,Dijon,{device.format(fifo=fifo)}\ncab-2,Talant,\n", encoding="utf-8"
    )
    code, out, err = await rig.provision()
    assert code == 1, out + err
    assert "not a regular file" in row_of(out, "cab-1")
    assert "created" in row_of(out, "cab-2")


async def test_a_control_character_of_a_cell_is_escaped_in_the_config_and_its_diff(rig: Rig) -> None:
    # %C2%9B is U+009B, a terminal's CSI: raw in agent.toml, the dry run's diff would drive the
    # technician's terminal (TOML allows it raw; tomllib reads its escape back the same).
    device = "cam1=onvif://10.0.0.1:80?username=a%C2%9B2J%C2%85b%E2%80%AE&password_file=cam1.password"
    rig.inventory.write_text(f"id,town,devices\ncab-1,Dijon,{device}\n", encoding="utf-8")
    (rig.out / "cab-1").mkdir(parents=True, mode=0o750)
    write_secret(rig.out / "cab-1" / "cam1.password", "camera-password")
    code, out, err = await rig.provision("--dry-run")
    assert code == 0, out + err
    assert '+username = "a\\u009b2J\\u0085b\\u202e"' in out
    assert not {"\x9b", "\x85", "\u202e"} & set(out)
    code, out, err = await rig.provision()
    assert code == 0, out + err
    text = (rig.out / "cab-1" / "agent.toml").read_text(encoding="utf-8")
    assert "\x9b" not in text
    loaded = load_config(rig.out / "cab-1" / "agent.toml")
    assert [getattr(d, "username", None) for d in loaded.devices] == ["a\x9b2J\x85b\u202e"]
