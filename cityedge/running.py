"""What a long-running command shares, without typer: logging, running until stopped, the agent.

``cityedge agent run`` comes here straight from ``cityedge.__main__`` (typer, click and rich stay
off a cabinet's resident memory); the typer CLI calls the same functions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    """One line naming the thing and the fix, exit code 2, no traceback."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_ERROR)


def setup_logging(verbose: bool, *, journal_identifier: str | None = None) -> None:
    """Plain lines on stderr; with ``journal_identifier``, the agent's story handler instead (journald's
    native protocol with structured fields under systemd, plain lines with the fields otherwise)."""
    level = logging.DEBUG if verbose else logging.INFO
    if journal_identifier is None:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    else:
        from edge_agent.journal import log_handler

        logging.basicConfig(level=level, handlers=[log_handler(journal_identifier)])
    # Third-party chatter (reconnect attempts, per-request debug) is not the operator's concern.
    for noisy in ("pymodbus", "uvicorn.access", "amqtt", "transitions", "asyncua", "zeep", "onvif"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_until_interrupted(main: Coroutine[Any, Any, None]) -> None:
    """Run until the work ends, Ctrl-C, or SIGTERM (systemd's stop): both stop it cleanly."""

    async def until_signalled() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await main
        except asyncio.CancelledError:
            print("stopped", file=sys.stderr)

    try:
        asyncio.run(until_signalled())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


def run_agent(config: Path, *, verbose: bool) -> None:
    """``cityedge agent run``: load the config (one error line if it is wrong), run until stopped.

    A config on trial (sent by central) is judged first (``edge_agent.remote_config``); what ends a
    start under it is written down for the next start, which rolls it back. Once a new config is in
    place, or a trial rolled back, the agent executes itself again, as the same process.
    """
    from edge_agent.agent import Agent
    from edge_agent.config import load_config
    from edge_agent.errors import AgentError
    from edge_agent.remote_config import RestartRequested, begin_start
    from protocols.sd_notify import Notifier

    setup_logging(verbose, journal_identifier="cityedge-agent")
    start = begin_start(config)
    try:
        try:
            loaded = load_config(config)
        except AgentError as exc:
            fail(str(exc))
        try:
            run_until_interrupted(Agent(loaded, notifier=Notifier(), start=start).run())
            start.stopped()
        except RestartRequested:
            restart_process()
        except AgentError as exc:
            fail(str(exc))
    except SystemExit as exit:
        if exit.code not in (0, None):
            start.crashed(f"exit code {exit.code}: {_last_error_line(exit)}")
        raise
    except BaseException as exc:
        start.crashed(f"{type(exc).__name__}: {exc}")
        raise


def _last_error_line(exit: SystemExit) -> str:
    cause = exit.__context__
    return str(cause) if cause is not None else "stopped"


def restart_process() -> None:
    """Execute this very command line again, in this process (same id: systemd follows it as it is)."""
    print("restarting with the new config", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, sys.orig_argv)


def agent_run_options(args: list[str]) -> tuple[Path, bool] | None:
    """``--config FILE [--verbose]`` of ``agent run``, or None for anything else (help, a mistake):
    the typer CLI then answers it."""
    config: str | None = None
    verbose = False
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--verbose", "-v"):
            verbose = True
        elif arg in ("--config", "-c") and rest and not rest[0].startswith("-"):
            config = rest.pop(0)
        elif arg.startswith("--config=") and len(arg) > len("--config="):
            config = arg.removeprefix("--config=")
        else:
            return None
    return None if config is None else (Path(config), verbose)
