"""``cityedge provision``: the typer command, a thin layer over ``cityedge.provision``.

Exit codes: 0 every cabinet done (or already right), 1 some failed (the table says which and why),
2 nothing could start (a bad flag, template, inventory, token or central address).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from cityedge.provision.apply import Options, Result
    from cityedge.provision.inventory import Inventory
    from cityedge.provision.template import Template

USAGE_ERROR = 2
SOME_FAILED = 1


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def provision(
    *,
    template: Annotated[
        Path, typer.Option(help="An agent config whose per-cabinet values are set (config/cabinets/).")
    ],
    out: Annotated[Path, typer.Option(help="Folder of the cabinets' folders: OUT/<id>/agent.toml, ...")],
    central: Annotated[str, typer.Option(help="Central's HTTP address, e.g. https://central.city:8080.")],
    token_file: Annotated[
        Path, typer.Option(help="File (0600) holding a provisioning token (role installer, or admin).")
    ],
    inventory: Annotated[
        Path | None, typer.Option(help="CSV of cabinets (README: the inventory's columns).")
    ] = None,
    cabinet: Annotated[str | None, typer.Option(help="One cabinet's id, instead of --inventory.")] = None,
    town: Annotated[str | None, typer.Option(help="Its town (with --cabinet).")] = None,
    lat: Annotated[str | None, typer.Option(help="Its latitude, degrees (with --cabinet).")] = None,
    lon: Annotated[str | None, typer.Option(help="Its longitude, degrees (with --cabinet).")] = None,
    label: Annotated[str | None, typer.Option(help="Where it stands, in words (with --cabinet).")] = None,
    rated_power_w: Annotated[str | None, typer.Option(help="Its lamps at full power, W.")] = None,
    baseline_kwh_per_day: Annotated[str | None, typer.Option(help="A historical baseline, kWh/day.")] = None,
    devices: Annotated[
        str | None, typer.Option(help="Its devices, e.g. 'lc1=modbus-tcp://10.0.0.5:502/PROFILE'.")
    ] = None,
    broker_url: Annotated[
        str | None, typer.Option(help="The broker for every cabinet (default: the template's).")
    ] = None,
    ca_file: Annotated[Path | None, typer.Option(help="CA certificate (PEM) the cabinets trust.")] = None,
    cert_file: Annotated[
        Path | None, typer.Option(help="Client certificate (PEM); {id} in the path is the cabinet's id.")
    ] = None,
    key_file: Annotated[Path | None, typer.Option(help="Its key (PEM); {id} is the cabinet's id.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would change, as a diff; change nothing.")] = False,
    new_credentials: Annotated[
        bool,
        typer.Option(
            help="Where OUT/<id>/broker-password is lost, get a new one (the old one stops working)."
        ),
    ] = False,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Cabinets provisioned at once.")] = 8,
    password_as_credential: Annotated[
        bool,
        typer.Option(
            help="The config names no password file: on the cabinet, broker-password goes to"
            " /etc/cityedge/broker-password (0600 root), which systemd hands the agent (LoadCredential)."
        ),
    ] = False,
) -> None:
    """Write each cabinet's agent config, register it with central, and get its broker credentials."""
    from cityedge.provision.apply import Options
    from cityedge.provision.template import Template as TemplateFile
    from cityedge.provision.template import TemplateError, TlsSources
    from protocols.fleet.broker_url import SecretFileError, read_secret_file

    specs = _inventory(
        inventory,
        {
            "id": cabinet,
            "town": town,
            "lat": lat,
            "lon": lon,
            "label": label,
            "rated_power_w": rated_power_w,
            "baseline_kwh_per_day": baseline_kwh_per_day,
            "devices": devices,
        },
    )
    try:
        loaded = TemplateFile.load(template)
    except TemplateError as exc:
        _fail(f"--template {exc}")
    try:
        token = read_secret_file(token_file)
    except SecretFileError as exc:
        _fail(f"--token-file {exc}")
    if not _is_api_token(token):  # and never shown: it may be a real one, mangled
        _fail(
            f"--token-file {token_file}: is not an API token (ce1_...):"
            " `cityedge central token create` makes one"
        )
    if not central.startswith(("http://", "https://")):
        _fail(f"--central {central!r}: expected http://HOST:PORT or https://HOST:PORT")
    if (cert_file is None) != (key_file is None):
        _fail("--cert-file and --key-file go together (the client certificate and its key)")
    options = Options(
        out=out,
        broker_url=broker_url,
        tls=TlsSources(ca_file=ca_file, cert_file=cert_file, key_file=key_file),
        dry_run=dry_run,
        new_credentials=new_credentials,
        password_in_config=not password_as_credential,
    )
    results = asyncio.run(_run(specs, loaded, central, token, options, parallel=parallel))
    if any(r.status == "failed" for r in results):
        raise typer.Exit(SOME_FAILED)


def _is_api_token(token: str) -> bool:
    """A token of central's format, of characters an HTTP header carries as they are."""
    from central.auth import key_id_of

    return token.isascii() and token.isprintable() and " " not in token and key_id_of(token) is not None


def _inventory(path: Path | None, flags: dict[str, str | None]) -> Inventory:
    from cityedge.provision.inventory import InventoryError, from_flags, read_inventory

    given = [
        f"--{'cabinet' if key == 'id' else key.replace('_', '-')}"
        for key, value in flags.items()
        if value is not None
    ]
    if path is not None:
        if given:
            _fail(f"give either --inventory or --cabinet with its flags, not both ({', '.join(given)})")
        try:
            return read_inventory(path)
        except InventoryError as exc:
            _fail(f"--inventory {exc}")
    if flags["id"] is None or flags["town"] is None:
        _fail("give --inventory FILE.csv, or --cabinet ID --town TOWN (and --lat, --lon, ...)")
    return from_flags(flags)


async def _run(
    inventory: Inventory, template: Template, central: str, token: str, options: Options, *, parallel: int
) -> list[Result]:
    from rich.console import Console

    from cityedge.provision.apply import Provisioner, Result
    from cityedge.provision.registry_client import CentralError, RegistryClient
    from cityedge.provision.report import progress_bar, results_table

    out, err = Console(), Console(stderr=True)
    refused = [Result(e.cabinet or "?", None, "failed", e.line, reason=str(e)) for e in inventory.errors]
    async with RegistryClient(central, token, parallel=parallel) as client:
        if inventory.cabinets:
            try:
                await client.check_token(inventory.cabinets[0].cabinet)
            except CentralError as exc:
                _fail(str(exc))
        provisioner = Provisioner(template, client, options)
        with progress_bar(err, len(inventory.cabinets), dry_run=options.dry_run) as advance:
            done = await provisioner.provision_all(inventory.cabinets, parallel=parallel, on_result=advance)
    if options.dry_run:
        for result in done:
            if result.diff:
                sys.stdout.write(result.diff)
        sys.stdout.flush()
    results = sorted(refused + done, key=lambda r: r.line)
    out.print(results_table(results, dry_run=options.dry_run))
    return results
