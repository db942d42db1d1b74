"""The edge-central contract: topic names, msgpack envelopes, their validation and version.

Pure code: no sockets, no clocks. Both the agent and the aggregator import it.
"""

from protocols.fleet.codec import (
    ack_for,
    decode_ack,
    decode_command,
    decode_data_batch,
    decode_record,
    decode_status,
    encode,
    encode_data_batch,
    merge_ranges,
    ranges_within,
    seq_ranges,
    subtract_ranges,
)
from protocols.fleet.errors import (
    FleetError,
    MalformedMessage,
    MessageTooLarge,
    TopicError,
    UnsupportedVersion,
    WrongCabinet,
)
from protocols.fleet.messages import (
    PROTOCOL_VERSION,
    Ack,
    Command,
    CommandResult,
    DataBatch,
    DeviceInfo,
    Event,
    Reading,
    Status,
)
from protocols.fleet.topics import Topics, parse_topic

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "Command",
    "CommandResult",
    "DataBatch",
    "DeviceInfo",
    "Event",
    "FleetError",
    "MalformedMessage",
    "MessageTooLarge",
    "Reading",
    "Status",
    "TopicError",
    "Topics",
    "UnsupportedVersion",
    "WrongCabinet",
    "ack_for",
    "decode_ack",
    "decode_command",
    "decode_data_batch",
    "decode_record",
    "decode_status",
    "encode",
    "encode_data_batch",
    "merge_ranges",
    "parse_topic",
    "ranges_within",
    "seq_ranges",
    "subtract_ranges",
]
