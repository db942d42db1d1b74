"""The `cityedge` command line: a thin layer over the agent, the aggregator and the demo.

Errors a user can fix (a bad config, a broker that cannot start, an HTTP address in use) print one
line naming the thing and the fix, and exit with code 2, without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from cityedge.provision.command import provision
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
    help="API tokens: who may read (viewer), send commands (operator), read the audit log (admin),"
    " provision cabinets (installer: reads too, never commands).",
    no_args_is_help=True,
)
config_app = typer.Typer(help="Cabinets' agent configs, sent through central's API.", no_args_is_help=True)


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit (as cityedge --version alone does).")
    ] = False,
) -> None:
    if version:
        from protocols.release import VERSION

        typer.echo(f"cityedge {VERSION}")
        raise typer.Exit()


app.add_typer(agent_app, name="agent")
app.command("provision")(provision)
app.add_typer(central_app, name="central")
central_app.add_typer(token_app, name="token")
central_app.add_typer(config_app, name="config")

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


DIAG_FAILED = 1


@app.command("diag")
def diag(
    config: Annotated[Path, typer.Option("--config", "-c", help="The cabinet's TOML config file.")] = Path(
        "/etc/cityedge/agent/agent.toml"
    ),
    json_output: Annotated[
        bool, typer.Option("--json", help="The report as one JSON document on stdout, for scripts.")
    ] = False,
) -> None:
    """For a field crew at the cabinet, offline: each device read once, serial lines, broker, buffer,
    clock, service, alarms. Works with the agent running or stopped; exit code 1 if anything fails."""
    from edge_agent.config import load_config
    from edge_agent.diag.render import as_json, print_report
    from edge_agent.diag.run import diagnose
    from edge_agent.errors import AgentError

    try:
        loaded = load_config(config)
    except AgentError as exc:
        _fail(str(exc))
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the report says who does not answer
    report = asyncio.run(diagnose(loaded))
    if json_output:
        typer.echo(as_json(report))
    else:
        print_report(report)
    if not report.ok:
        raise typer.Exit(DIAG_FAILED)


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL: sqlite:///FILE (or just FILE) or postgresql://[USER@]HOST[:PORT]/DB"
        " (password in ~/.pgpass or $PGPASSWORD). Default: $CITYEDGE_DB, else central.db.",
    ),
]


def _db_url(option: str | None, config_value: str | None = None) -> str:
    """The database to use, checked now: a wrong URL is one line naming the fix, exit 2."""
    from central.errors import StoreError
    from central.store import db_url_from, parse_db_url

    url = db_url_from(option, config_value)
    try:
        parse_db_url(url)
    except StoreError as exc:
        _fail(str(exc))
    return url


def _db_shown(url: str) -> str:
    """Where the data is, as a message may show it (a SQLite file's full path; no password)."""
    from central.store import parse_db_url

    parsed = parse_db_url(url)
    return str(parsed.path.resolve()) if parsed.path is not None else parsed.redacted


@central_app.command("serve")
def central_serve(
    *,
    db: DbOption = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Central config file, TOML with the tables store (url, retention_days, ...), broker"
            " (url, password_file) and http (listen): see config/central.example.toml. Options given"
            " here win over it."
        ),
    ] = None,
    broker: Annotated[
        str | None,
        typer.Option(
            help="Broker URL, mqtt://[user@]host:port; no password here (see below)."
            " Default: the config file's broker.url, else mqtt://127.0.0.1:1883."
        ),
    ] = None,
    broker_password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the broker password, readable by this user only (0600 or 0640). "
            "Without it: the config file's broker.password_file, $CITYEDGE_BROKER_PASSWORD, the file"
            " named by $CITYEDGE_BROKER_PASSWORD_FILE, or the systemd credential broker-password."
        ),
    ] = None,
    http: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT the HTTP API listens on. Default: the config file's http.listen, else"
            " 127.0.0.1:8080."
        ),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Ingest every cabinet's data from the broker, store it, serve the HTTP API.

    Raw readings older than store.retention_days (default 90) are deleted as it runs; rollups stay.
    """
    from central.config import CentralConfig, ConfigError, load_central_config, retention_of
    from central.errors import ServerError, StoreError
    from central.server import serve

    settings = CentralConfig()
    if config is not None:
        try:
            settings = load_central_config(config)
        except ConfigError as exc:
            _fail(str(exc))
    host, port = _host_port(http or settings.http.listen or "127.0.0.1:8080", "--http")
    broker_url = broker or settings.broker.url or "mqtt://127.0.0.1:1883"
    password_file = broker_password_file or (
        Path(settings.broker.password_file) if settings.broker.password_file else None
    )
    password = _broker_password(broker_url, password_file)
    url = _db_url(db, settings.store.url)
    _setup_logging(verbose)
    try:
        _run_until_interrupted(
            serve(
                db=url,
                broker_url=broker_url,
                broker_password=password,
                http_host=host,
                http_port=port,
                retention=retention_of(settings),
            )
        )
    except (ServerError, StoreError) as exc:  # an HTTP address in use, a database it cannot open
        _fail(str(exc))


@central_app.command("migrate")
def central_migrate(
    db: DbOption = None,
    config: Annotated[
        Path | None,
        typer.Option(help="Central config file (its store.url), as for serve. --db wins over it."),
    ] = None,
) -> None:
    """Bring the database's schema to this build's version; safe to run again, or from two hosts.

    PostgreSQL: ``central serve`` refuses a database whose schema is behind until this has run.
    SQLite: serve creates a new file itself and refuses an older one, which this upgrades in place.
    """
    from central.config import ConfigError, load_central_config
    from central.errors import StoreError
    from central.store import parse_db_url

    config_url = None
    if config is not None:
        try:
            config_url = load_central_config(config).store.url
        except ConfigError as exc:
            _fail(str(exc))
    url = _db_url(db, config_url)
    parsed = parse_db_url(url)
    try:
        if parsed.backend == "sqlite":
            assert parsed.path is not None
            was, now = _migrate_sqlite(parsed.path)
            state = f"migrated from version {was} to {now}" if was != now else f"already at version {now}"
            typer.echo(f"{_db_shown(url)}: {state}", err=True)
            return
        import psycopg

        from central.store.postgres.migrations import migrate_database

        assert parsed.dsn is not None
        try:
            before, applied = asyncio.run(migrate_database(parsed.dsn))
        except psycopg.Error as exc:
            raise StoreError(parsed.redacted, "migrate", str(exc).strip().splitlines()[0]) from None
    except StoreError as exc:
        _fail(str(exc))
    for migration in applied:
        typer.echo(f"applied {migration.version}: {migration.name}", err=True)
    after = applied[-1].version if applied else before
    state = f"migrated from version {before} to {after}" if applied else f"already at version {after}"
    typer.echo(f"{parsed.redacted}: {state}", err=True)


def _migrate_sqlite(path: Path) -> tuple[int, int]:
    """(version before, version now) of the SQLite file at ``path``; a new or empty file is created
    at this version, an older one upgraded in place."""
    import sqlite3

    from central.errors import StoreError
    from central.store.sqlite import SqliteStore
    from central.store.sqlite.migrate import migrate
    from central.store.sqlite.schema import SCHEMA_VERSION

    async def create() -> None:
        async with SqliteStore(path):
            pass  # opening a new file creates its schema

    try:
        if not path.exists() or path.stat().st_size == 0:
            asyncio.run(create())
            return 0, SCHEMA_VERSION
        with contextlib.closing(sqlite3.connect(path)) as conn:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            (tables,) = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").fetchone()
        if version == 0 and tables == 0:
            asyncio.run(create())
            return 0, SCHEMA_VERSION
        return migrate(path, progress=lambda step: typer.echo(f"  {step}", err=True))
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(str(path), "migrate", str(exc)) from exc


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
    light: Annotated[
        bool,
        typer.Option(
            help="Cheaper stand-in cabinets: the agent's wire behaviour (session, births, last wills,"
            " batches, acks, resends, command results) without its buffer and sync code."
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
            light=light,
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


def _with_tokens(db: str, work: Callable[[Tokens], Awaitable[_T]]) -> _T:
    """Run ``work`` on the tokens of the database ``db``; a store or token error is one line, exit 2."""
    from central.auth import TokenError, Tokens
    from central.errors import StoreError
    from central.store import open_store

    async def run() -> _T:
        async with open_store(db) as store:
            return await work(Tokens(store))

    try:
        return asyncio.run(run())
    except (TokenError, StoreError) as exc:
        _fail(str(exc))


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="viewer, operator, admin or installer.")],
    name: Annotated[str, typer.Option(help="Whose token: shown in the audit log and as issued_by.")],
    db: DbOption = None,
) -> None:
    """Make a token and print it, once: only its digest is stored."""
    from central.auth import TokenError, parse_role

    try:
        parsed = parse_role(role)
    except TokenError as exc:
        _fail(f"--role: {exc.problem}; {exc.hint}")
    url = _db_url(db)
    token = _with_tokens(url, lambda tokens: tokens.create(name, parsed))
    typer.echo(f"token {name!r} ({parsed.value}) stored in {_db_shown(url)}; it is shown only now:", err=True)
    typer.echo(token)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")],
    db: DbOption = None,
) -> None:
    """Revoke the token of NAME: its next request gets 401."""
    url = _db_url(db)
    _with_tokens(url, lambda tokens: tokens.revoke(name))
    typer.echo(f"token {name!r} revoked in {_db_shown(url)}", err=True)


@token_app.command("list")
def token_list(db: DbOption = None) -> None:
    """The live tokens: name, role, key id and when each was made (never the token itself)."""
    import datetime as dt

    url = _db_url(db)
    rows = _with_tokens(url, lambda tokens: tokens.live())
    if not rows:
        typer.echo(f"no live token in {_db_shown(url)}", err=True)
    for row in rows:
        made = dt.datetime.fromtimestamp(row.created_ms / 1000, dt.UTC).isoformat(timespec="seconds")
        typer.echo(f"{row.name}\t{row.role}\t{row.key_id}\t{made}")


CONFIG_NOT_RUN = 1


@config_app.command("push")
def config_push(
    *,
    cabinet: Annotated[str, typer.Option(help="The cabinet's id (the config must name it).")],
    file: Annotated[Path, typer.Option(help="The cabinet's new agent config (TOML, no password in it).")],
    token_file: Annotated[Path, typer.Option(help="File holding an admin's API token (0600).")],
    api: Annotated[str, typer.Option(help="Central's HTTP address.")] = "http://127.0.0.1:8080",
    confirm_within: Annotated[
        int,
        typer.Option(
            min=2, max=3600, help="Seconds the cabinet has to reach the broker with it before it rolls back."
        ),
    ] = 120,
    wait: Annotated[
        bool, typer.Option(help="Wait for the cabinet's result (exit code 1 unless executed).")
    ] = True,
) -> None:
    """Send a cabinet its new config: it checks it, tries it, and rolls back by itself if it fails."""
    from cityedge.config_push import PushError, config_text, push_config
    from protocols.fleet.broker_url import SecretFileError, read_secret_file

    try:
        token = read_secret_file(token_file)
    except SecretFileError as exc:
        _fail(f"--token-file {exc}")
    try:
        text = config_text(file.read_bytes(), str(file))
    except OSError as exc:
        _fail(f"--file {file}: cannot read it ({exc.strerror})")
    except PushError as exc:
        _fail(str(exc))
    try:
        pushed = asyncio.run(
            push_config(
                api=api,
                token=token,
                cabinet=cabinet,
                text=text,
                confirm_within_s=confirm_within,
                wait=wait,
                emit=typer.echo,
            )
        )
    except PushError as exc:
        _fail(str(exc))
    typer.echo(f"{pushed.status}" + (f": {pushed.reason}" if pushed.reason else ""))
    if wait and pushed.status != "executed":
        raise typer.Exit(CONFIG_NOT_RUN)
