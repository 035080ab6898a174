"""Terminal output shared by the console scripts (fcos3d, fcos3d-compile, fcos3d-validate): rich, lazily.

The only library module besides the report code that prints; the CLIs import from here, never each other.
"""

from __future__ import annotations

from contextlib import contextmanager

import click


def console():
    """A rich console on stdout (made per call: cheap, and it follows the terminal's current width). Piped into a
    log, rich would assume 80 columns and cut the numbers of wide tables to "0.11…": logs get 160 unless COLUMNS
    says otherwise."""
    import os

    from rich.console import Console

    out = Console(stderr=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=False, width=160)
    return out


# What --set does, for every command that takes it.
SET_HELP = "Override a param() of the config, NAME=VALUE (repeatable), e.g. --set data_root=demo_out/nuscenes_lmdb."


def progress(title: str, *extra_columns, **kwargs):
    """A rich Progress with the project's columns: title, bar, done/total, elapsed, remaining, then ``extra_columns``."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra_columns,
        console=console(),
        **kwargs,
    )


@contextmanager
def progress_bar(description: str):
    """Yield a ``progress(done, total)`` callback drawn as a rich progress bar."""
    with progress("{task.description}", transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def print_table(title: str, rows: list[tuple], header: tuple) -> None:
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(str(h))
    for r in rows:
        table.add_row(*[str(x) for x in r])
    console().print(table)


def overrides(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--set NAME=VALUE`` options -> {NAME: VALUE} for load_config's param() overrides."""
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE, e.g. --set data_root=demo_out/nuscenes_lmdb")
        k, v = pair.split("=", 1)
        out[k.strip()] = v
    return out
