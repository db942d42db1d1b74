"""The journal handler speaks journald's native protocol (to a real datagram socket the test binds),
and plain lines carry the same fields when there is no journal."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.journal import CABINET, JournalHandler, PlainFormatter, journal_socket, priority, story
from tests.journal_socket import JournalSocket, parse_entry


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalSocket]:
    listener = JournalSocket(tmp_path / "journal.sock")
    yield listener
    listener.close()


def record(message: str, *args: object, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("edge_agent.poller", level, __file__, 42, message, args, None, "poll_once")
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def test_a_story_line_arrives_with_its_fields(journal: JournalSocket) -> None:
    handler = JournalHandler(identifier="cityedge-agent", socket_path=journal.path)
    token = CABINET.set("cab-7")
    try:
        handler.emit(record("device %s lost: %s", "lc2", "refused", **story("device_lost", device="lc2")))
    finally:
        CABINET.reset(token)
    [entry] = journal.drain()
    assert entry["MESSAGE"] == "device lc2 lost: refused"
    assert entry["PRIORITY"] == "4"
    assert entry["SYSLOG_IDENTIFIER"] == "cityedge-agent"
    assert (entry["CABINET"], entry["DEVICE"], entry["EVENT"]) == ("cab-7", "lc2", "device_lost")
    assert (entry["LOGGER"], entry["CODE_LINE"], entry["CODE_FUNC"]) == (
        "edge_agent.poller",
        "42",
        "poll_once",
    )
    handler.close()


def test_the_message_is_the_message_alone_whatever_the_root_format(journal: JournalSocket) -> None:
    handler = JournalHandler(identifier="cityedge-agent", socket_path=journal.path)
    # What logging.basicConfig(handlers=[handler]) does to a handler without a formatter of its own:
    if handler.formatter is None:
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
    handler.emit(record("evicted %d records", 5))
    handler.close()
    assert [entry["MESSAGE"] for entry in journal.drain()] == ["evicted 5 records"]


def test_a_value_with_a_newline_goes_length_prefixed(journal: JournalSocket) -> None:
    handler = JournalHandler(identifier="cityedge-agent", socket_path=journal.path)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        made = record("it failed", level=logging.ERROR)
        made.exc_info = sys.exc_info()
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.emit(made)
    [entry] = journal.drain()
    assert entry["MESSAGE"].startswith("it failed\nTraceback")
    assert entry["MESSAGE"].rstrip().endswith("RuntimeError: boom")
    assert entry["PRIORITY"] == "3"
    handler.close()


def test_field_names_that_journald_would_refuse_are_left_out(journal: JournalSocket) -> None:
    handler = JournalHandler(identifier="x", socket_path=journal.path)
    extra = {"story": {"event": "e", "bad name": "1", "_trusted": "2", "priority": "0", "ok_1": "3"}}
    handler.emit(record("m", **extra))
    [entry] = journal.drain()
    assert entry["PRIORITY"] == "4" and entry["OK_1"] == "3" and entry["EVENT"] == "e"
    assert not {"BAD NAME", "_TRUSTED"} & set(entry)
    handler.close()


def test_no_journal_socket_falls_back_to_a_plain_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = JournalHandler(identifier="x", socket_path=tmp_path / "absent.sock", fallback=stream)
    handler.emit(record("device %s back", "lc2", level=logging.INFO, **story("device_back", device="lc2")))
    assert handler.fallbacks == 1
    line = stream.getvalue()
    assert line.count("\n") == 1 and "INFO edge_agent.poller: device lc2 back" in line
    assert line.rstrip().endswith("device=lc2 event=device_back")
    handler.close()


def test_plain_lines_quote_values_with_spaces() -> None:
    made = record("m", **story("broker_unreachable", reason="[Errno 111] Connection refused"))
    line = PlainFormatter().format(made)
    assert line.endswith('event=broker_unreachable reason="[Errno 111] Connection refused"')


def test_levels_map_to_syslog_priorities() -> None:
    assert [priority(level) for level in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_the_journal_is_used_under_systemd_only(tmp_path: Path, journal: JournalSocket) -> None:
    path = journal.path
    with (tmp_path / "err").open("w") as err:
        info = os.fstat(err.fileno())
        stream = f"{info.st_dev}:{info.st_ino}"
        assert journal_socket({"JOURNAL_STREAM": stream}, err, socket_path=path) == path
        assert journal_socket({"JOURNAL_STREAM": "1:1"}, err, socket_path=path) is None  # redirected
        assert journal_socket({}, err, socket_path=path) is None  # run by hand
        assert journal_socket({"INVOCATION_ID": "ab12"}, err, socket_path=path) == path  # a service
        gone = tmp_path / "absent.sock"
        assert (
            journal_socket({"JOURNAL_STREAM": stream, "INVOCATION_ID": "ab12"}, err, socket_path=gone) is None
        )


def test_the_parser_refuses_a_truncated_binary_field() -> None:
    with pytest.raises(ValueError, match="not followed by a newline"):
        parse_entry(b"MESSAGE\n" + (5).to_bytes(8, "little") + b"abcdeX")


# A device's or a broker's text (a camera's SOAP fault, an MQTT reason string) reaches the log inside
# a message or a field: in a plain line it must stay on that line and never drive the terminal.
FORGED = "timeout\n2026-12-01 20:00:00,000 CRITICAL edge_agent.alarms: door forced  event=alarm_raised"


def test_a_plain_line_never_lets_a_message_forge_another_line(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = JournalHandler(identifier="x", socket_path=tmp_path / "absent.sock", fallback=stream)
    lost = story("device_lost", device="cam1")
    handler.emit(record("device %s lost: %s", "cam1", FORGED + "\x1b[2J\r", **lost))
    handler.close()
    line = stream.getvalue()
    assert line.count("\n") == 1 and line.endswith("device=cam1 event=device_lost\n")
    assert "\x1b" not in line and "\r" not in line
    assert "timeout\\n2026-12-01 20:00:00,000 CRITICAL" in line  # still readable, escaped


def test_a_plain_field_value_cannot_carry_control_characters() -> None:
    made = record("m", **story("broker_disconnected", reason="gone\r\x1b[31mforged\u2028x", device="a\x1bb"))
    line = PlainFormatter().format(made)
    assert not any(c in line for c in "\r\n\x1b\u2028")
    assert 'reason="gone\\r\\x1b[31mforged\\u2028x"' in line and "device=a\\x1bb" in line


def test_a_plain_traceback_stays_whole() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        made = record("it failed", level=logging.ERROR)
        made.exc_info = sys.exc_info()
    assert "it failed\nTraceback" in PlainFormatter().format(made)


def test_journald_fields_cannot_be_forged_through_a_value(journal: JournalSocket) -> None:
    handler = JournalHandler(identifier="x", socket_path=journal.path)
    detail = "refused\nPRIORITY=0\nEVENT=alarm_raised\nDEVICE=lc9"
    lost = story("device_lost", device="cam1", reason=detail)
    handler.emit(record("device %s lost: %s", "cam1", detail, **lost))
    handler.close()
    [entry] = journal.drain()
    assert (entry["PRIORITY"], entry["EVENT"], entry["DEVICE"]) == ("4", "device_lost", "cam1")
    assert entry["MESSAGE"] == "device cam1 lost: " + detail.replace("\n", "\\n")
    assert entry["REASON"] == detail  # a field's value travels whole, length-prefixed


def test_a_message_cut_at_the_limit_stays_utf8(journal: JournalSocket) -> None:
    # journalctl shows an entry whose MESSAGE is not UTF-8 as "[blob data]": a cut inside a character
    # would hide the whole message.
    from edge_agent.journal import MAX_MESSAGE_BYTES, MAX_VALUE_BYTES

    handler = JournalHandler(identifier="x", socket_path=journal.path)
    text = "x" * (MAX_MESSAGE_BYTES - 1) + "é" * 10
    value = "y" * (MAX_VALUE_BYTES - 1) + "é"
    handler.emit(record("%s", text, **story("alarm_raised", value=value)))
    handler.close()
    [entry] = journal.drain()  # the parser decodes every value as UTF-8, strictly
    assert entry["MESSAGE"] == "x" * (MAX_MESSAGE_BYTES - 1)
    assert entry["VALUE"] == "y" * (MAX_VALUE_BYTES - 1)


def test_a_full_journal_never_blocks_and_loses_no_line(tmp_path: Path) -> None:
    # journald stalled: its socket's queue fills; each record then goes to stderr, at once.
    import socket
    import threading

    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stalled.bind(str(tmp_path / "stalled.sock"))
    stream = io.StringIO()
    handler = JournalHandler(identifier="x", socket_path=tmp_path / "stalled.sock", fallback=stream)
    worker = threading.Thread(target=lambda: [handler.emit(record("evicted %d", n)) for n in range(2000)])
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "a full journal socket blocked the logging thread"
    assert handler.fallbacks > 0
    assert stream.getvalue().count("\n") == handler.fallbacks
    assert "evicted 1999" in stream.getvalue()
    handler.close()
    stalled.close()


def test_a_journal_message_from_a_device_stays_one_line_without_escapes(journal: JournalSocket) -> None:
    # journalctl shows each line of a MESSAGE as a line of the log, and `journalctl -a` or `-o cat`
    # writes its bytes to the terminal as they are.
    handler = JournalHandler(identifier="x", socket_path=journal.path)
    handler.emit(record("device %s lost: %s", "cam1", FORGED + "\x1b]0;owned\x07", **story("device_lost")))
    handler.close()
    [entry] = journal.drain()
    assert "\n" not in entry["MESSAGE"] and "\x1b" not in entry["MESSAGE"]
    assert entry["MESSAGE"].startswith("device cam1 lost: timeout\\n2026-12-01 20:00:00,000 CRITICAL")
