"""The `cityedge` command line: a thin layer over the agent, the aggregator and the demo.

Errors a user can fix (a bad config, a broker that cannot start, an HTTP address in use) print one
line naming the thing and the fix, and exit with code 2, without a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from cityedge.running import run_agent, run_until_interrupted, setup_logging

if TYPE_CHECKING:
    from central.auth import Tokens

_T = TypeVar("_T")

app = typer.Typer(
    help="cityedge: street cabinets' edge agent and the central aggregator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
agent_app = typer.Typer(help="The edge agent that runs in a street cabinet.", no_args_is_help=True)
central_app = typer.Typer(help="The central aggregator of the control room.", no_args_is_help=True)
token_app = typer.Typer(
    help="API tokens: who may read (viewer), send commands (operator), read the audit log (admin).",
    no_args_is_help=True,
)
app.add_typer(agent_app, name="agent")
app.add_typer(central_app, name="central")
central_app.add_typer(token_app, name="token")

USAGE_ERROR = 2


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


_setup_logging = setup_logging
_run_until_interrupted = run_until_interrupted


def _host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        _fail(f"{option} {value!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host, int(port)


Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")]


@agent_app.command("run")
def agent_run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The cabinet's TOML config file.")],
    verbose: Verbose = False,
) -> None:
    """Poll the cabinet's devices, buffer every reading, sync to central. Runs until stopped."""
    run_agent(config, verbose=verbose)


PROBE_FAILED = 1


@agent_app.command("check")
def agent_check(
    config: Annotated[Path, typer.Option("--config", "-c", help="The cabinet's TOML config file.")],
    probe: Annotated[
        bool,
        typer.Option(
            "--probe",
            help="Also read every point of every device once and flag what would be reported bad "
            "(no answer, implausible, undecodable); exit code 1 if anything is.",
        ),
    ] = False,
) -> None:
    """Validate a cabinet config and its device profiles (saying which file each profile came from)."""
    from edge_agent.config import load_config
    from edge_agent.errors import AgentError

    try:
        loaded = load_config(config)
    except AgentError as exc:
        _fail(str(exc))
    devices = loaded.devices
    typer.echo(f"{config}: ok (cabinet {loaded.config.cabinet.id}, {len(devices)} devices)")
    for device in devices:
        file = loaded.profile_files.get(device.name)
        source = f"driver {device.driver}" if file is None else f"profile {device.profile_name} from {file}"
        typer.echo(f"  {device.name}: {source}")
    if probe:
        from edge_agent.probe import probe as probe_devices
        from edge_agent.probe import probe_table

        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the table says who does not answer
        results = asyncio.run(probe_devices(loaded))
        for line in probe_table(results):
            typer.echo(line)
        if not all(result.good for result in results):
            raise typer.Exit(PROBE_FAILED)


@central_app.command("serve")
def central_serve(
    db: Annotated[Path, typer.Option(help="SQLite database file (created if missing).")] = Path("central.db"),
    broker: Annotated[
        str, typer.Option(help="Broker URL, mqtt://[user@]host:port; no password here (see below).")
    ] = "mqtt://127.0.0.1:1883",
    broker_password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the broker password, readable by this user only (0600 or 0640). "
            "Without it: $CITYEDGE_BROKER_PASSWORD, the file named by $CITYEDGE_BROKER_PASSWORD_FILE, "
            "or the systemd credential broker-password."
        ),
    ] = None,
    http: Annotated[str, typer.Option(help="HOST:PORT the HTTP API listens on.")] = "127.0.0.1:8080",
    verbose: Verbose = False,
) -> None:
    """Ingest every cabinet's data from the broker, store it, serve the HTTP API."""
    from central.errors import ServerError, StoreError
    from central.server import serve

    host, port = _host_port(http, "--http")
    password = _broker_password(broker, broker_password_file)
    _setup_logging(verbose)
    try:
        _run_until_interrupted(
            serve(db_path=db, broker_url=broker, broker_password=password, http_host=host, http_port=port)
        )
    except (ServerError, StoreError) as exc:  # an HTTP address in use, a database it cannot open
        _fail(str(exc))


def _broker_password(url: str, password_file: Path | None) -> str | None:
    """The password of ``central serve``: never from its command line, where every user can read it."""
    from protocols.fleet.broker_url import (
        PASSWORD_ENV,
        SecretFileError,
        parse_broker_url,
        password_from_environment,
        read_secret_file,
    )

    try:
        address = parse_broker_url(url)
    except ValueError as exc:
        _fail(f"--broker: {exc}")
    if address.password is not None:
        _fail(
            f"--broker {address}: the URL holds a password, and a command line is visible to every user"
            " of this machine: remove it from the URL and put it in a file only this user can read"
            f" (--broker-password-file FILE), or in ${PASSWORD_ENV} (an EnvironmentFile)"
        )
    try:
        return read_secret_file(password_file) if password_file else password_from_environment()
    except SecretFileError as exc:
        _fail(f"broker password file {exc}")


@app.command("demo")
def demo(
    cabinets: Annotated[
        int,
        typer.Option(
            min=1,
            max=20_000,
            help="Simulated cabinets: the first 10 real agents polling device simulators, the rest"
            " fleet-sim cabinets (the agent's buffer, sync and commands; readings made in memory).",
        ),
    ] = 5,
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its databases.")] = Path("demo-data"),
    http: Annotated[str, typer.Option(help="HOST:PORT of the aggregator's HTTP API.")] = ("127.0.0.1:8080"),
    broker: Annotated[str | None, typer.Option(help="Use this broker URL instead of starting one.")] = None,
    verbose: Verbose = False,
) -> None:
    """Broker, aggregator and simulated cabinets on this machine. Ctrl-C stops everything."""
    from central.errors import ServerError, StoreError
    from cityedge.broker import BrokerError
    from cityedge.demo import run_demo

    host, port = _host_port(http, "--http")
    _setup_logging(verbose)
    try:
        _run_until_interrupted(
            run_demo(
                cabinets=cabinets,
                data_dir=data_dir,
                http_host=host,
                http_port=port,
                broker_url=broker,
                announce=typer.echo,
            )
        )
    except (BrokerError, ServerError, StoreError) as exc:
        _fail(str(exc))


@app.command("fleet-sim")
def fleet_sim(
    *,
    cabinets: Annotated[int, typer.Option(min=1, max=20_000, help="Simulated cabinets.")] = 100,
    points: Annotated[int, typer.Option(min=2, max=1000, help="Readings per cabinet and interval.")] = 40,
    interval: Annotated[float, typer.Option(min=0.05, max=3600, help="Seconds between readings.")] = 10.0,
    broker: Annotated[
        str, typer.Option(help="Broker URL, mqtt://[user@]host:port; no password here (see below).")
    ] = "mqtt://127.0.0.1:1883",
    credentials: Annotated[
        Path | None,
        typer.Option(
            help="user:password lines, one per cabinet (the file cityedge.broker_accounts takes), 0600:"
            " each cabinet logs in as itself. Without it every cabinet uses the URL's user and the"
            " password of --broker-password-file or the environment, as `central serve` does."
        ),
    ] = None,
    broker_password_file: Annotated[
        Path | None, typer.Option(help="File holding the one password of the URL's user (0600).")
    ] = None,
    prefix: Annotated[str, typer.Option(help="Cabinet ids are PREFIX-00001, PREFIX-00002, ...")] = "sim",
    stagger: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds over which the cabinets start (default: 5 ms per cabinet)."),
    ] = None,
    outage_fraction: Annotated[
        float, typer.Option(min=0, max=1, help="Share of cabinets losing their link at each outage.")
    ] = 0.0,
    outage_seconds: Annotated[float, typer.Option(min=0.1, help="How long an outage lasts.")] = 60.0,
    outage_every: Annotated[float, typer.Option(min=0.1, help="Seconds between outages.")] = 300.0,
    ack_timeout: Annotated[float, typer.Option(min=0.1, help="Resend a batch unacked this long.")] = 30.0,
    seconds: Annotated[
        float | None, typer.Option(min=0.1, help="Stop after this many seconds (default: run until stopped).")
    ] = None,
    api: Annotated[
        str | None, typer.Option(help="Central's HTTP address, for --command-every (http://HOST:PORT).")
    ] = None,
    api_token_file: Annotated[
        Path | None, typer.Option(help="File holding an operator's API token (0600), for --command-every.")
    ] = None,
    command_every: Annotated[
        float,
        typer.Option(
            min=0, help="Send a dim command to a random cabinet through --api every this many seconds."
        ),
    ] = 0.0,
    sqlite_threads: Annotated[
        bool,
        typer.Option(
            help="Run each cabinet's SQLite work on a thread of its own, as a real agent does"
            " (default: on the event loop; the databases are in memory)."
        ),
    ] = False,
    stats_every: Annotated[float, typer.Option(min=0.1, help="Seconds between stats lines.")] = 10.0,
    json_lines: Annotated[bool, typer.Option("--json", help="Stats as one JSON object per line.")] = False,
    verbose: Verbose = False,
) -> None:
    """Thousands of simulated cabinets (the agent's own buffer, sync and command code) against a central."""
    from cityedge.broker_accounts import read_credentials
    from cityedge.fleet_sim import FleetPlan, OutagePlan
    from cityedge.fleet_sim.fleet import MissingCredentials
    from cityedge.fleet_sim.run import TooManyCabinets, run_fleet_sim
    from cityedge.fleet_sim.traffic import CommandTraffic
    from protocols.fleet.broker_url import SecretFileError, parse_broker_url, read_secret_file

    try:
        outages = None
        if outage_fraction > 0:
            outages = OutagePlan(fraction=outage_fraction, duration_s=outage_seconds, every_s=outage_every)
        plan = FleetPlan(
            cabinets=cabinets,
            points=points,
            interval_s=interval,
            prefix=prefix,
            stagger_s=stagger,
            outages=outages,
            ack_timeout_s=ack_timeout,
            sqlite_threads=sqlite_threads,
        )
    except ValueError as exc:
        _fail(str(exc))
    password = _broker_password(broker, broker_password_file)
    address = parse_broker_url(broker)
    if password is not None:
        address = dataclasses.replace(address, password=password)
    try:
        passwords = read_credentials(credentials) if credentials is not None else None
    except (SecretFileError, ValueError) as exc:
        _fail(f"--credentials {exc}")
    traffic = None
    if command_every > 0:
        if api is None or api_token_file is None:
            _fail(
                "--command-every needs --api http://HOST:PORT and --api-token-file FILE (an operator's token)"
            )
        try:
            token = read_secret_file(api_token_file)
        except SecretFileError as exc:
            _fail(f"--api-token-file {exc}")
        traffic = CommandTraffic(api_url=api, token=token, cabinets=plan.cabinet_ids, every_s=command_every)
    # Info logging of thousands of agents is a flood: warnings only unless asked.
    _setup_logging(verbose)
    if not verbose:
        logging.getLogger("edge_agent").setLevel(logging.WARNING)

    async def main() -> None:
        stuck = await run_fleet_sim(
            plan,
            broker=address,
            credentials=passwords,
            seconds=seconds,
            stats_every_s=stats_every,
            emit=typer.echo,
            as_json=json_lines,
            traffic=traffic,
        )
        if stuck:
            # Their tasks would hold asyncio.run's clean-up forever; the broker publishes their wills.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    try:
        _run_until_interrupted(main())
    except (MissingCredentials, TooManyCabinets) as exc:
        _fail(str(exc))


TokenDb = Annotated[Path, typer.Option("--db", help="The aggregator's SQLite database (created if missing).")]


def _with_tokens(db: Path, work: Callable[[Tokens], Awaitable[_T]]) -> _T:
    """Run ``work`` on the tokens of the database ``db``; a store or token error is one line, exit 2."""
    from central.auth import TokenError, Tokens
    from central.errors import StoreError
    from central.sqlite_store import SqliteStore

    async def run() -> _T:
        async with SqliteStore(db) as store:
            return await work(Tokens(store))

    try:
        return asyncio.run(run())
    except (TokenError, StoreError) as exc:
        _fail(str(exc))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, operator or admin.")],
    name: Annotated[str, typer.Option(help="Whose token: shown in the audit log and as issued_by.")],
    db: TokenDb = Path("central.db"),
) -> None:
    """Make a token and print it, once: only its digest is stored."""
    from central.auth import TokenError, parse_role

    try:
        parsed = parse_role(role)
    except TokenError as exc:
        _fail(f"--role: {exc.problem}; {exc.hint}")
    token = _with_tokens(db, lambda tokens: tokens.create(name, parsed))
    typer.echo(f"token {name!r} ({parsed.value}) stored in {db.resolve()}; it is shown only now:", err=True)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    db: TokenDb = Path("central.db"),
) -> None:
    """Revoke the token of NAME: its next request gets 401."""
    _with_tokens(db, lambda tokens: tokens.revoke(name))
    typer.echo(f"token {name!r} revoked in {db.resolve()}", err=True)


@token_app.command("list")
def token_list(db: TokenDb = Path("central.db")) -> None:
    """The live tokens: name, role, key id and when each was made (never the token itself)."""
    import datetime as dt

    rows = _with_tokens(db, lambda tokens: tokens.live())
    if not rows:
        typer.echo(f"no live token in {db.resolve()}", err=True)
    for row in rows:
        made = dt.datetime.fromtimestamp(row.created_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        typer.echo(f"{row.name}\t{row.role}\t{row.key_id}\t{made}")
