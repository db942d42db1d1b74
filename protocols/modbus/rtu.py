"""Pure Modbus RTU knowledge: frame sizes, CRC, line timing, and judging a received answer.

No sockets, no clocks: ``SerialLine`` (the master), ``SerialBusSimulator`` (the devices) and the bench
use these functions, and the unit tests check them on bytes.

Timing (Modbus over serial line v1.02, 2.5.1.1): a character is 1 start bit, ``bytesize`` data bits,
one parity bit unless parity is ``"N"``, and ``stopbits`` stop bits: 10 bits in 8N1 (the default here,
as in pymodbus, and the only setting a pseudo-terminal accepts), 11 in 8E1 (the Modbus specification's
default, common on real lines). Frames are separated by a silence of 3.5 characters, fixed at 1.75 ms
above 19,200 baud.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Final, Literal

from protocols.errors import DriverError
from protocols.modbus.codec import Request

Parity = Literal["N", "E", "O"]

EXCEPTION_FLAG: Final = 0x80
EXCEPTION_SIZE: Final = 5  # address, function | 0x80, exception code, CRC (2)
_HEADER_AND_CRC: Final = 5  # address, function, byte count, CRC (2)
_WRITE_ANSWER_SIZE: Final = 8  # address, function, address (2), value or count (2), CRC (2)
_MIN_SILENCE_S: Final = 0.00175
_FIXED_SILENCE_ABOVE_BAUD: Final = 19_200


class CorruptFrame(DriverError):
    """The unit (or the line) answered with bytes that are not a valid answer: CRC error, wrong
    address or function, wrong length. ``frame`` holds the bytes received, ``problem`` what is wrong."""

    reason = "corrupt_frame"

    def __init__(self, device: str, detail: str, frame: bytes = b"", problem: str = "") -> None:
        super().__init__(device, detail)
        self.frame = frame
        self.problem = problem or detail


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc16(data: bytes) -> bytes:
    """The Modbus CRC of ``data`` as it goes on the wire (low byte first)."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc.to_bytes(2, "little")


def with_crc(frame: bytes) -> bytes:
    return frame + crc16(frame)


def bits_per_char(*, bytesize: int = 8, parity: Parity = "N", stopbits: int = 1) -> int:
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def char_time(baudrate: int, *, bytesize: int = 8, parity: Parity = "N", stopbits: int = 1) -> float:
    """Seconds one character takes on the line."""
    return bits_per_char(bytesize=bytesize, parity=parity, stopbits=stopbits) / baudrate


def frame_silence(baudrate: int, *, bytesize: int = 8, parity: Parity = "N", stopbits: int = 1) -> float:
    """The 3.5-character silence that ends a frame (1.75 ms above 19,200 baud)."""
    if baudrate > _FIXED_SILENCE_ABOVE_BAUD:
        return _MIN_SILENCE_S
    return 3.5 * char_time(baudrate, bytesize=bytesize, parity=parity, stopbits=stopbits)


def request_size(request: Request) -> int:
    """Bytes of the RTU frame carrying ``request``."""
    if request.function == 15:  # write multiple coils: header, byte count, packed bits
        return 9 + (request.count + 7) // 8
    if request.function == 16:  # write multiple registers
        return 9 + 2 * request.count
    return 8  # address, function, address (2), count or value (2), CRC (2)


def response_size(request: Request) -> int:
    """Bytes of the normal (non-exception) RTU answer to ``request``."""
    if request.function in (1, 2):
        return _HEADER_AND_CRC + (request.count + 7) // 8
    if request.function in (3, 4):
        return _HEADER_AND_CRC + 2 * request.count
    return _WRITE_ANSWER_SIZE


def transaction_chars(request: Request) -> float:
    """Characters of line time one transaction needs at best: both frames and the silence before each."""
    return request_size(request) + response_size(request) + 2 * 3.5


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the bytes received since a request are, judged as early as possible.

    ``length`` > 0: they start with the complete, valid answer (``length`` bytes). ``stale`` > 0: they
    start with a valid frame of that many bytes from another unit (a late answer to an abandoned
    request), to be skipped. ``problem``: they cannot be the answer, and why. All zero/None: more bytes
    are needed.
    """

    length: int = 0
    stale: int = 0
    problem: str | None = None

    @property
    def complete(self) -> bool:
        return self.length > 0


_READS: Final = frozenset({1, 2, 3, 4})
_WRITES: Final = frozenset({5, 6, 15, 16})
_MAX_FRAME: Final = 256


def answer_size(received: bytes) -> int | None:
    """Size of the answer frame ``received`` starts with, from its header: 0 if more bytes are needed
    to tell, None if the header is not that of an answer to a read or write."""
    if len(received) < 2:
        return 0
    function = received[1]
    if function & EXCEPTION_FLAG:
        return EXCEPTION_SIZE if function & ~EXCEPTION_FLAG in _READS | _WRITES else None
    if function in _WRITES:
        return _WRITE_ANSWER_SIZE
    if function not in _READS:
        return None
    if len(received) < 3:
        return 0
    size = _HEADER_AND_CRC + received[2]
    return size if size <= _MAX_FRAME else None


def judge_answer(received: bytes, *, unit: int, request: Request, others: Container[int] = ()) -> Judgement:
    """Judge the bytes received since ``request`` was sent to ``unit``.

    On a master-slave line the answer starts with the unit's address, then the request's function (or
    it with the exception flag), and a read's byte count is known in advance: a wrong frame is usually
    recognised from its first bytes, a damaged one by its CRC. A frame from one of the ``others``
    (units known on the line) is waited for and, if its CRC is valid, reported as stale; bytes from any
    other address are a problem at once.
    """
    if not received:
        return Judgement()
    address = received[0]
    if address != unit and address not in others:
        return Judgement(problem=f"answer starts with address {address}, expected {unit}")
    if len(received) < 2:
        return Judgement()
    function = received[1]
    ours = address == unit and function in (request.function, request.function | EXCEPTION_FLAG)
    if ours and function == request.function:
        size = response_size(request)
        if request.function in _READS and len(received) >= 3 and received[2] != size - _HEADER_AND_CRC:
            return Judgement(
                problem=f"byte count {received[2]}, expected {size - _HEADER_AND_CRC} for this read"
            )
    elif ours:
        size = EXCEPTION_SIZE
    else:
        found = answer_size(received)
        if found is None:
            return Judgement(
                problem=f"frame from address {address} with function {function}, "
                f"expected address {unit} and function {request.function}"
            )
        if found == 0:
            return Judgement()
        size = found
    if len(received) < size:
        return Judgement()
    body, crc = received[: size - 2], received[size - 2 : size]
    if crc != (expected := crc16(body)):
        return Judgement(problem=f"CRC {crc.hex()} does not match the frame's {expected.hex()}")
    return Judgement(length=size) if ours else Judgement(stale=size)
