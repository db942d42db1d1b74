"""set_config's args: what the fleet contract refuses on both sides (central at POST, the agent on
receipt), with the field and the words: a damaged text, not TOML, a secret in plain text, bounds."""

from __future__ import annotations

import hashlib

import pytest

from protocols.fleet.commands import (
    DEFAULT_CONFIRM_WITHIN_S,
    CommandArgsError,
    SetConfigArgs,
    config_cabinet,
    parse_posted,
    parse_wire,
)


def args(text: str, **more: object) -> dict[str, object]:
    return {"config": text, "sha256": hashlib.sha256(text.encode()).hexdigest(), **more}


GOOD = '[cabinet]\nid = "cab-1"\n[broker]\nurl = "mqtt://cab-1@broker:1883"\npassword_file = "pw"\n'


def test_a_config_with_its_hash_is_taken_and_names_its_cabinet() -> None:
    parsed = parse_wire("set_config", args(GOOD))  # type: ignore[arg-type]
    assert isinstance(parsed, SetConfigArgs)
    assert parsed.confirm_within_s == DEFAULT_CONFIRM_WITHIN_S
    assert config_cabinet(parsed) == "cab-1"


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({**args(GOOD), "sha256": "0" * 64}, "sha256", "is not the SHA-256 of config (that is "),
        ({**args(GOOD), "sha256": "ABC"}, "sha256", "matching regex"),
        (args("[cabinet\n"), "config", "not valid TOML"),
        (args('[broker]\npassword = "hunter2"\n'), "config", "broker.password holds a secret in plain text"),
        (
            args('[[devices]]\nname = "cam"\nPassword = "x"\n'),
            "config",
            "devices[0].Password holds a secret in plain text",
        ),
        (
            args('[broker]\nurl = "mqtt://cab:hunter2@host:1883"\n'),
            "config",
            "broker.url (a password in a URL)",
        ),
        (args("a = " + "[" * 40 + "]" * 40), "config", "nested more than 16 levels deep"),
        (args(GOOD, confirm_within_s=1), "confirm_within_s", "greater than or equal to 2, got 1"),
        (args(GOOD, confirm_within_s=3601), "confirm_within_s", "less than or equal to 3600"),
        (args(GOOD, restart=True), "restart", "unknown key"),
        ({"sha256": "0" * 64}, "config", "required"),
    ],
)
def test_what_both_sides_refuse(given: dict[str, object], field: str, words: str) -> None:
    with pytest.raises(CommandArgsError) as caught:
        parse_posted("set_config", given)
    (problem,) = caught.value.problems
    assert problem[0] == field
    assert words in problem[1]
    assert "hunter2" not in str(caught.value)  # a secret refused is never echoed


def test_a_text_past_the_command_size_is_refused() -> None:
    with pytest.raises(CommandArgsError) as caught:
        parse_posted("set_config", args("# " + "x" * (16 * 1024)))
    assert caught.value.problems[0][0] == "config"


def test_a_key_of_thousands_of_parts_is_refused_before_it_costs_seconds() -> None:
    # tomllib takes quadratic time over one dotted key's parts: 16 KiB of a.a.a... took ~1-2 s of
    # the event loop (central's at POST, the agent's on receipt) before being refused as too deep.
    import time

    started = time.perf_counter()
    with pytest.raises(CommandArgsError) as caught:
        parse_posted("set_config", args("a" + ".a" * 8190 + "=1"))
    took = time.perf_counter() - started
    (problem,) = caught.value.problems
    assert problem[0] == "config"
    assert problem[1] == "line 1 has more than 256 dots: no key of an agent config has that many parts"
    assert took < 0.2, f"{took:.2f} s"


def test_dots_in_comments_and_values_are_not_keys() -> None:
    text = GOOD + "# " + "." * 300 + "\n" + '[profile]\ndescription = "a.b.c.d"\n'
    assert isinstance(parse_wire("set_config", args(text)), SetConfigArgs)  # type: ignore[arg-type]
