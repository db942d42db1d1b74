"""What a technician sees: a progress bar while a batch runs, then one table of what was done."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from cityedge.provision.apply import Result, Status

_STYLE: dict[Status, str] = {
    "created": "green",
    "updated": "cyan",
    "unchanged": "dim",
    "failed": "bold red",
}


@contextlib.contextmanager
def progress_bar(console: Console, total: int, *, dry_run: bool) -> Iterator[Callable[[Result], None]]:
    """A bar of ``total`` cabinets; the callable yielded advances it by one result."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[failed]} failed"),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("checking" if dry_run else "provisioning", total=total, failed=0)
        failed = 0

        def advance(result: Result) -> None:
            nonlocal failed
            failed += result.status == "failed"
            bar.update(task, advance=1, failed=failed)

        yield advance


def results_table(results: Sequence[Result], *, dry_run: bool) -> Table:
    counts = {status: sum(r.status == status for r in results) for status in _STYLE}
    caption = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    table = Table(
        title="cityedge provision" + (" --dry-run: nothing written" if dry_run else ""),
        caption=caption or "no cabinet",
    )
    table.add_column("cabinet", no_wrap=True)
    table.add_column("town")
    table.add_column("result" if not dry_run else "would be", no_wrap=True)
    table.add_column("what" if not dry_run else "what would change / why it failed", overflow="fold")
    for result in results:
        what = result.reason if result.status == "failed" else "; ".join(result.done) or "nothing to do"
        # Text, not markup: a cell holds what the inventory (or central) says, "[/bold]" included.
        table.add_row(
            Text(result.cabinet),
            Text(result.town or ""),
            Text(result.status, style=_STYLE[result.status]),
            Text(what or ""),
        )
    return table
