"""``trainyard sweeps``: start a search from a W&B-style config file, follow it, cancel it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from trainyard.cli.context import client_of
from trainyard.cli.output import JsonFlag, api_errors, console, print_json, read_json, table

app = typer.Typer(help="Sweeps: hyperparameter searches (grid, random, early termination).", no_args_is_help=True)
TRIALS = [("index", "#"), ("job_id", "job"), ("status", "status"), ("metric", "metric"), ("params", "parameters")]


def _trial_rows(sweep) -> list[dict[str, Any]]:
    return [{**t, "job_id": (t.get("job_id") or "-")[:12],
             "params": ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in t["parameters"].items())}
            for t in sweep.trials]


def _show(sweep, as_json: bool) -> None:
    if as_json:
        print_json(sweep.raw)
        return
    best = sweep.best
    console.print(f"sweep {sweep.id} {sweep.name!r}: {sweep.status}"
                  + (f"; best {best['job_id'][:12]} ({best['metric']:.4g})" if best else ""))
    table(_trial_rows(sweep), TRIALS)


@app.command("create")
def create(ctx: typer.Context,
           file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="the sweep config (JSON)")],
           watch: Annotated[bool, typer.Option("--watch", help="follow until every trial is over")] = False,
           as_json: JsonFlag = False) -> None:
    """Start a sweep."""
    config = read_json(file, "a JSON sweep config")
    with api_errors():
        sweep = client_of(ctx).sweeps.create(config)
        if watch:
            while sweep.refresh().status == "running":
                time.sleep(2)
    _show(sweep, as_json)


@app.command("ls")
def list_sweeps(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List your sweeps."""
    with api_errors():
        items = client_of(ctx).sweeps.list()
    if as_json:
        print_json(items)
    else:
        table(items, [("id", "id"), ("name", "name"), ("status", "status"), ("method", "method")])


@app.command("show")
def show(ctx: typer.Context, sweep_id: str, as_json: JsonFlag = False) -> None:
    """A sweep's trials, their parameters and metric, and the best."""
    with api_errors():
        sweep = client_of(ctx).sweeps.get(sweep_id)
    _show(sweep, as_json)


@app.command("cancel")
def cancel(ctx: typer.Context, sweep_id: str) -> None:
    """Cancel a sweep and its queued or running trials."""
    with api_errors():
        sweep = client_of(ctx).sweeps.get(sweep_id).cancel()
    console.print(f"sweep {sweep.id}: {sweep.status}")
