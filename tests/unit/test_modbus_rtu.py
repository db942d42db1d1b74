"""Pure RTU knowledge: CRC, frame sizes, line timing, and judging the bytes of an answer."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from protocols.modbus.codec import Request, read_request, write_request
from protocols.modbus.profile import parse_profile
from protocols.modbus.rtu import (
    answer_size,
    bits_per_char,
    char_time,
    crc16,
    frame_silence,
    judge_answer,
    request_size,
    response_size,
    transaction_chars,
    with_crc,
)
from protocols.modbus.serial_port import open_failure_advice

READ_6_INPUTS = read_request("input", 0, 6)


def test_crc_of_the_specification_example() -> None:
    # "01 03 00 00 00 0A C5 CD": read 10 holding registers from unit 1.
    assert crc16(bytes.fromhex("01030000000A")) == bytes.fromhex("C5CD")


@given(st.binary(min_size=1, max_size=254))
def test_crc_agrees_with_pymodbus(data: bytes) -> None:
    assert crc16(data) == FramerRTU.compute_CRC(data).to_bytes(2, "big")


def test_frame_sizes() -> None:
    assert request_size(read_request("holding", 0, 10)) == 8
    assert response_size(read_request("holding", 0, 10)) == 5 + 20
    assert response_size(read_request("coil", 0, 9)) == 5 + 2
    assert response_size(read_request("discrete", 0, 8)) == 5 + 1
    assert (request_size(Request(16, 0, 2, (1, 2))), response_size(Request(16, 0, 2, (1, 2)))) == (13, 8)
    assert (request_size(Request(5, 0, 1, (1,))), response_size(Request(5, 0, 1, (1,)))) == (8, 8)
    assert request_size(Request(15, 0, 10, (1,) * 10)) == 9 + 2
    assert transaction_chars(read_request("holding", 0, 1)) == 8 + 7 + 7


def test_line_timing() -> None:
    assert bits_per_char() == 10  # 8N1
    assert bits_per_char(parity="E") == 11
    assert bits_per_char(parity="N", stopbits=2) == 11
    assert char_time(9600) == pytest.approx(10 / 9600)
    assert frame_silence(9600, parity="E") == pytest.approx(3.5 * 11 / 9600)
    assert frame_silence(115_200) == 0.00175  # fixed above 19,200 baud


def test_write_requests_from_points() -> None:
    profile = parse_profile(
        """
        [profile]
        name = "w"
        description = "writable points"
        [[points]]
        name = "relay"
        table = "coil"
        address = 3
        writable = true
        [[points]]
        name = "dim_level_pct"
        table = "holding"
        address = 1
        writable = true
        [[points]]
        name = "limit_w"
        table = "holding"
        address = 4
        type = "float32"
        writable = true
        """,
        "w.toml",
    )
    relay, dim, limit = profile.points
    assert write_request(relay, [True]) == Request(5, 3, 1, (1,))
    assert write_request(dim, [40]) == Request(6, 1, 1, (40,))
    assert write_request(limit, [0x4228, 0]) == Request(16, 4, 2, (0x4228, 0))
    assert write_request(limit, [0x4228, 0]).is_write
    assert not read_request("coil", 0, 1).is_write


def answer(unit: int, pdu_hex: str) -> bytes:
    return with_crc(bytes([unit]) + bytes.fromhex(pdu_hex))


GOOD = answer(1, "040C" + "00" * 12)  # read 6 input registers: 12 bytes


def test_a_complete_valid_answer() -> None:
    judgement = judge_answer(GOOD, unit=1, request=READ_6_INPUTS)
    assert (judgement.complete, judgement.length, judgement.problem) == (True, len(GOOD), None)
    # Trailing bytes do not matter: the answer is the frame at the start.
    assert judge_answer(GOOD + b"\x00", unit=1, request=READ_6_INPUTS).length == len(GOOD)


def test_every_prefix_of_a_valid_answer_waits_for_more() -> None:
    for end in range(len(GOOD)):
        judgement = judge_answer(GOOD[:end], unit=1, request=READ_6_INPUTS)
        assert (judgement.length, judgement.stale, judgement.problem) == (0, 0, None)


def test_an_exception_answer_is_complete() -> None:
    exception = answer(1, "8402")
    assert judge_answer(exception, unit=1, request=READ_6_INPUTS).length == 5


@pytest.mark.parametrize(
    ("received", "problem"),
    [
        (b"\xf9", "answer starts with address 249, expected 1"),
        (bytes([1, 0x2B]), "frame from address 1 with function 43, expected address 1 and function 4"),
        (bytes([2, 0x2B]), "frame from address 2 with function 43"),
        (bytes([1, 0x04, 0x02]), "byte count 2, expected 12 for this read"),
        (GOOD[:-1] + bytes([GOOD[-1] ^ 0xFF]), "CRC"),
        (GOOD[:5] + bytes([GOOD[5] ^ 1]) + GOOD[6:], "CRC"),
    ],
)
def test_wrong_bytes_are_recognised_as_early_as_possible(received: bytes, problem: str) -> None:
    judgement = judge_answer(received, unit=1, request=READ_6_INPUTS, others={1, 2})
    assert judgement.problem is not None
    assert problem in judgement.problem
    assert not judgement.complete


def test_another_function_from_the_unit_is_judged_by_its_crc() -> None:
    # A late answer of the unit itself to an abandoned request: skipped if valid, a problem if not.
    late = answer(1, "0302" + "0001")
    assert judge_answer(late, unit=1, request=READ_6_INPUTS).stale == len(late)
    damaged = late[:-1] + bytes([late[-1] ^ 1])
    assert "CRC" in (judge_answer(damaged, unit=1, request=READ_6_INPUTS).problem or "")


def test_a_valid_frame_from_another_unit_is_stale() -> None:
    late = answer(2, "0302" + "0001")  # unit 2's answer to an abandoned read of one register
    judgement = judge_answer(late + GOOD, unit=1, request=READ_6_INPUTS, others={2})
    assert (judgement.stale, judgement.problem) == (len(late), None)
    assert judge_answer(late[:3], unit=1, request=READ_6_INPUTS, others={2}).problem is None
    # Unknown to the line: not a late answer, garbage.
    assert judge_answer(late, unit=1, request=READ_6_INPUTS).problem is not None
    damaged = late[:-1] + bytes([late[-1] ^ 1])
    assert "CRC" in (judge_answer(damaged, unit=1, request=READ_6_INPUTS, others={2}).problem or "")


def test_answer_size_from_headers() -> None:
    assert answer_size(b"\x01") == 0
    assert answer_size(bytes([1, 3])) == 0
    assert answer_size(bytes([1, 3, 4])) == 9
    assert answer_size(bytes([1, 6])) == 8
    assert answer_size(bytes([1, 0x83])) == 5
    assert answer_size(bytes([1, 0x2B])) is None
    assert answer_size(bytes([1, 3, 255])) is None  # longer than any RTU frame


def test_open_failure_advice_names_the_port_and_the_fix() -> None:
    missing = open_failure_advice("/dev/ttyUSB7", exists=False)
    assert "/dev/ttyUSB7" in missing and "no such device" in missing
    denied = open_failure_advice("/dev/ttyUSB0", exists=True, accessible=False, group="dialout")
    assert "permission denied" in denied
    assert "sudo usermod -aG dialout" in denied
    assert "not a serial device" in open_failure_advice("/etc/hosts", exists=True, is_device=False)
    assert "another program" in open_failure_advice("/dev/ttyS0", exists=True)
