"""``trainyard datasets``: upload, add a built-in set, list, show."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trainyard.cli.context import client_of
from trainyard.cli.output import JsonFlag, api_errors, print_json, table

app = typer.Typer(help="Datasets: upload files, add built-in sample sets, list them.", no_args_is_help=True)
COLUMNS = [("id", "id"), ("name", "name"), ("num_samples", "samples"), ("input_shape", "input"),
           ("task", "task"), ("num_classes", "classes")]


def _show(ctx: typer.Context, dataset, as_json: bool) -> None:
    if as_json:
        print_json(dataset.raw)
    else:
        table([dataset.raw], COLUMNS)


@app.command("upload")
def upload(ctx: typer.Context, file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                                       help=".npz, .npy or .csv")],
           name: Annotated[str | None, typer.Option(help="default: the file's name")] = None,
           task: Annotated[str, typer.Option(help="classification or regression")] = "classification",
           targets: Annotated[Path | None, typer.Option(exists=True, help=".npy of targets beside an .npy")] = None,
           target_columns: Annotated[str | None, typer.Option(help="CSV target columns, comma-separated")] = None,
           as_json: JsonFlag = False) -> None:
    """Upload a dataset file."""
    with api_errors():
        ds = client_of(ctx).datasets.upload(file, name=name, task=task, targets=targets,
                                            target_columns=target_columns)
    _show(ctx, ds, as_json)


@app.command("builtin")
def builtin(ctx: typer.Context, which: Annotated[str, typer.Argument(help="digits, iris, wine, breast_cancer, "
                                                                          "diabetes")],
            limit: Annotated[int | None, typer.Option(help="keep only the first samples")] = None,
            as_json: JsonFlag = False) -> None:
    """Add one of scikit-learn's sample sets."""
    with api_errors():
        ds = client_of(ctx).datasets.builtin(which, limit=limit)
    _show(ctx, ds, as_json)


@app.command("ls")
def list_datasets(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List your datasets, newest first."""
    with api_errors():
        items = client_of(ctx).datasets.list()
    if as_json:
        print_json([d.raw for d in items])
    else:
        table([d.raw for d in items], COLUMNS)


@app.command("rm")
def remove(ctx: typer.Context, dataset_id: str) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    with api_errors():
        client_of(ctx).datasets.delete(dataset_id)
    print(f"deleted dataset {dataset_id}")


@app.command("show")
def show(ctx: typer.Context, dataset_id: str, as_json: JsonFlag = False) -> None:
    """One dataset's description."""
    with api_errors():
        ds = client_of(ctx).datasets.get(dataset_id)
    _show(ctx, ds, as_json)
