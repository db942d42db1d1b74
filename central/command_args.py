"""Posted command args, checked with the fleet's own definition (``protocols.fleet.commands``) so that an
operator's mistake is a 422 naming the field, not a command a cabinet rejects later: a schedule is
validated whole when it is posted, exactly as the cabinet will validate it.

What goes on the wire is normalised: fleet args are scalars, so the schedule travels as one JSON text
(the validated schedule, defaults filled in), and ``until`` as milliseconds since 1970 UTC. Only central
judges ``until`` against the present (the fleet contract knows no clock).

Reading stored args back (``operator_args``) never fails: args that cannot be shown (stored before the
depth bound, or damaged) read as ``{"not_shown": "why"}``, so that one row never breaks a listing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from central.errors import FieldError, InvalidRequest
from protocols.fleet.commands import SCHEDULE_TOO_DEEP, CommandArgsError, deeper_than, parse_posted, to_wire
from protocols.fleet.limits import MAX_SCHEDULE_DEPTH
from protocols.fleet.messages import Scalar
from protocols.fleet.problems import loc_of, value_at

# The one key of the args shown for a stored command whose args cannot be (its value says why).
ARGS_NOT_SHOWN = "not_shown"
_ERROR_TYPES = {"required": "missing"}

_decode_args = msgspec.json.Decoder(dict[str, Any])


def wire_args(action: str, args: dict[str, Any], *, now_ms: int) -> dict[str, Scalar]:
    """The args to send for ``action``, or InvalidRequest naming each wrong field under body.args."""
    try:
        wire = to_wire(parse_posted(action, args))
    except CommandArgsError as exc:
        raise InvalidRequest([_field_error(field, problem, args) for field, problem in exc.problems]) from exc
    until = wire.get("until")
    if isinstance(until, int) and until <= now_ms:
        raise InvalidRequest.field(
            ("body", "args", "until"),
            "until is in the past: give a later time, or leave it out for an override without end",
            args.get("until"),
        )
    return wire


def _field_error(field: str, problem: str, args: dict[str, Any]) -> FieldError:
    loc = loc_of(field)
    if problem.startswith(SCHEDULE_TOO_DEEP):
        kind = "too_deep"
    elif problem.startswith("unknown key"):
        kind = "extra_forbidden"
    else:
        kind = _ERROR_TYPES.get(problem, "invalid")
    return FieldError(type=kind, loc=("body", "args", *loc), msg=problem, input=value_at(args, loc))


def operator_args(action: str, stored: Mapping[str, Scalar], unreadable: str | None = None) -> dict[str, Any]:
    """The stored wire args as an operator wrote them: the schedule back to a JSON object.

    Args that cannot be shown (the store could not read them back: ``unreadable`` says why; or a
    schedule that is not a JSON object, or nested deeper than a schedule may be) are
    ``{"not_shown": why}``: never an error, so that a listing always answers.
    """
    if unreadable is not None:
        return {ARGS_NOT_SHOWN: unreadable}
    args: dict[str, Any] = dict(stored)
    try:
        schedule = args.get("schedule")
        if action == "set_schedule" and isinstance(schedule, str):
            args["schedule"] = _decode_args.decode(schedule)
    except (msgspec.DecodeError, RecursionError):
        return {ARGS_NOT_SHOWN: "the stored args hold a schedule that is not a JSON object"}
    if deeper_than(args, MAX_SCHEDULE_DEPTH + 1):
        return {
            ARGS_NOT_SHOWN: f"the stored args are nested more than {MAX_SCHEDULE_DEPTH + 1} levels deep,"
            f" too deep to send back (stored before a schedule was limited to {MAX_SCHEDULE_DEPTH})"
        }
    return args
