"""How the buffer stores records on the card: one compressed block per commit, not one row per record.

A commit of a second's readings (100 points: about 3.7 KB of msgpack records) becomes one row of about
1 KB: fewer pages touched per commit (each page written costs the card a whole flash page) and a
24-hour backlog of 100 points at 1 Hz inside the default 256 MB cap.

A block keeps each record's bytes exactly as the fleet protocol encodes them (the sender wraps them
into a batch without decoding them), with its seq and kind beside it, so the sender and the cap never
have to decode a record.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum

import msgspec

from protocols.fleet import merge_ranges

# zlib level 6: a tenth of a millisecond for a second's readings on a Pi, ~10 % smaller than level 1.
LEVEL = 6
# A block holds at most this many records: a resend or an eviction decodes a whole block.
MAX_BLOCK_RECORDS = 1000
# What decompressing a block may give at most (a damaged or hostile file cannot exhaust memory).
MAX_BLOCK_BYTES = 16 * 1024 * 1024


class Kind(IntEnum):
    READING = 0
    EVENT = 1
    RESULT = 2


class _Wire(msgspec.Struct, array_like=True, frozen=True):
    seqs: list[tuple[int, int]]  # ascending inclusive ranges: one, unless records were evicted
    kinds: bytes  # one byte per record
    bodies: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Wire)


class BlockError(ValueError):
    """A block that does not decode: the file is damaged."""


@dataclass(frozen=True, slots=True)
class Block:
    """Records in seq order: ``seqs[i]`` is of kind ``kinds[i]``, encoded as ``bodies[i]``."""

    seqs: list[int]
    kinds: bytes
    bodies: list[bytes]

    def __len__(self) -> int:
        return len(self.seqs)

    @property
    def readings(self) -> int:
        return self.kinds.count(Kind.READING)

    def records(self) -> Iterator[tuple[int, Kind, bytes]]:
        for seq, kind, body in zip(self.seqs, self.kinds, self.bodies, strict=True):
            yield seq, Kind(kind), body

    def keep(self, keep: Sequence[bool]) -> Block:
        picked = [i for i, k in enumerate(keep) if k]
        return Block(
            [self.seqs[i] for i in picked],
            bytes(self.kinds[i] for i in picked),
            [self.bodies[i] for i in picked],
        )


def pack(block: Block) -> bytes:
    ranges = merge_ranges((s, s) for s in block.seqs)
    return zlib.compress(_encoder.encode(_Wire(ranges, block.kinds, block.bodies)), LEVEL)


def unpack(data: bytes) -> Block:
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data, MAX_BLOCK_BYTES)
        if inflater.unconsumed_tail:
            raise BlockError(f"a block inflates past {MAX_BLOCK_BYTES} bytes")
        wire = _decoder.decode(raw)
    except (zlib.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BlockError(f"a block does not decode ({exc})") from exc
    count = sum(b - a + 1 for a, b in wire.seqs)  # before expanding: a damaged range may be huge
    if not (count == len(wire.kinds) == len(wire.bodies)) or any(b < a for a, b in wire.seqs):
        raise BlockError("a block's seqs, kinds and records do not match")
    return Block([seq for a, b in wire.seqs for seq in range(a, b + 1)], wire.kinds, wire.bodies)
