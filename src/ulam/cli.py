"""The ``ulam`` command: ``ulam list`` and ``ulam reproduce [NAME ...]``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ulam.reproduce import discover, run_reproductions, write_report

console = Console(stderr=True)


@click.group()
@click.version_option(package_name="ulam")
def main() -> None:
    """ulam: Monte Carlo methods for machine learning, every answer with its standard error."""


@main.command("list", short_help="List the paper reproductions with their papers and claims.")
def list_reproductions() -> None:
    """List the paper reproductions that `ulam reproduce` can run."""
    table = Table("name", "paper", "claim")
    for name, rep in discover().items():
        table.add_row(name, rep.paper, rep.summary)
    Console().print(table)


@main.command("reproduce", short_help="Run paper reproductions and write the report (exit 1 if a claim fails).")
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="Small sizes: the whole set runs in a few minutes on 2 cores.")
@click.option("--out", "out_dir", default="report", show_default=True, type=click.Path(file_okay=False),
              help="Folder for report.md, report.json and the figures.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for every random key.")
def reproduce(names: tuple[str, ...], quick: bool, out_dir: str, seed: int) -> None:
    """Reproduce papers' claims (all of them, or the NAMEs given) and write a report.

    Exits with status 1 when any claim fails or any reproduction crashes.
    """
    available = discover()
    unknown = [n for n in names if n not in available]
    if unknown:
        raise click.BadParameter(
            f"unknown reproduction(s) {', '.join(unknown)}; `ulam list` shows: {', '.join(available)}",
            param_hint="NAMES",
        )
    chosen = [available[n] for n in names] if names else list(available.values())
    out = Path(out_dir)
    with Progress(
        SpinnerColumn(), TextColumn("[bold]{task.fields[name]}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
    ) as progress:
        task = progress.add_task("", total=len(chosen), name="")

        def on_start(rep):
            progress.update(task, name=rep.name, description="starting")

        def on_message(message):
            progress.update(task, description=message)

        def on_end(record):
            status = "[green]pass" if record.passed else "[red]FAIL"
            progress.console.print(f"{status}[/] {record.reproduction.name} ({record.seconds:.1f} s)")
            progress.advance(task)

        records = run_reproductions(
            chosen, quick=quick, seed=seed, out_dir=out, on_start=on_start, on_message=on_message, on_end=on_end
        )
    path = write_report(records, out, quick=quick, seed=seed)
    failed = [r.reproduction.name for r in records if not r.passed]
    console.print(f"Report: {path}")
    if failed:
        console.print(f"[red]Failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
