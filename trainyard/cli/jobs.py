"""``trainyard submit``, ``trainyard jobs ...`` and ``trainyard download``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.text import Text

from trainyard.cli.context import client_of
from trainyard.cli.output import (
    JOB_FAILED,
    JsonFlag,
    api_errors,
    console,
    errors,
    print_json,
    read_json,
    sparkline,
    table,
)
from trainyard.client import Job

app = typer.Typer(help="Jobs: list, show, watch live, read logs, cancel.", no_args_is_help=True)
COLUMNS = [("id", "id"), ("name", "name"), ("status", "status"), ("progress", "step"), ("val_loss", "val loss"),
           ("val_accuracy", "val acc")]


def _row(job: Job) -> dict[str, Any]:
    p = job.progress
    return {"id": job.id, "name": job.name, "status": job.status,
            "progress": f"{p.get('step', 0)}/{p.get('total_steps', 0)}",
            "val_loss": job.final_metrics.get("val_loss"), "val_accuracy": job.final_metrics.get("val_accuracy")}


def _exit_for(job: Job) -> None:
    if job.status != "succeeded":
        errors.print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
        raise typer.Exit(JOB_FAILED)


def submit(ctx: typer.Context,
           file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                                help="a POST /v1/jobs body: name, dataset_id, model, training")],
           watch: Annotated[bool, typer.Option("--watch", help="follow the job live until it ends")] = False,
           as_json: JsonFlag = False) -> None:
    """Submit a job from a JSON file."""
    body = read_json(file, "a JSON job body")
    with api_errors():
        job = client_of(ctx).jobs.submit(model=body.get("model"), dataset=body.get("dataset_id"),
                                         training=body.get("training"), name=body.get("name"))
    if not watch:
        print_json(job.raw) if as_json else console.print(f"submitted job {job.id} ({job.status})")
        return
    _watch(job, as_json)


@app.command("ls")
def list_jobs(ctx: typer.Context,
              status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled")]
              = None,
              tag: Annotated[list[str] | None, typer.Option(help="only jobs with this tag (repeatable)")] = None,
              name: Annotated[str | None, typer.Option(help="a substring of the name")] = None,
              sort: Annotated[str, typer.Option(help="created, name or metric:<name>; - for descending")]
              = "-created",
              limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50, as_json: JsonFlag = False) -> None:
    """List your jobs (newest first unless --sort says otherwise)."""
    with api_errors():
        items = client_of(ctx).jobs.list(status=status, tags=tag or (), name=name, sort=sort, limit=limit)
    if as_json:
        print_json([j.raw for j in items])
    else:
        table([_row(j) for j in items], COLUMNS)


@app.command("show")
def show(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """One job: status, progress, final metrics."""
    with api_errors():
        job = client_of(ctx).jobs.get(job_id)
    if as_json:
        print_json(job.raw)
        return
    table([_row(job)], COLUMNS)
    if job.error:
        console.print(f"error: {job.error}")
    for name, value in sorted(job.final_metrics.items()):
        if isinstance(value, (int, float)):
            console.print(f"  {name:<24} {value:.6g}")


@app.command("watch")
def watch(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Follow a job live (epoch, step, loss sparkline, samples/s, ETA); exit 1 if it fails."""
    with api_errors():
        job = client_of(ctx).jobs.get(job_id)
    _watch(job, as_json)


def _watch(job: Job, as_json: bool) -> None:
    with api_errors():
        if as_json:  # one JSON object per event, for scripts
            for kind, data in job.events(after=0):
                print(json.dumps({"event": kind, "data": data}), flush=True)
        else:
            losses: list[float] = []
            state: dict[str, Any] = {}
            with Live(_panel(job, state, losses), console=console, refresh_per_second=4, transient=False) as live:
                for kind, data in job.events(after=0):
                    if kind == "metric":
                        losses += [r["value"] for r in data["rows"] if r["name"] == "loss"]
                    elif kind == "progress":
                        state.update(data)
                    live.update(_panel(job, state, losses))
            console.line()  # the panel's last line ends the output
    _exit_for(job)


def _panel(job: Job, p: dict[str, Any], losses: list[float]) -> Text:
    step, total = p.get("step", 0), p.get("total_steps") or job.progress.get("total_steps") or 0
    eta = p.get("eta_s")
    rate = p.get("samples_per_s")
    lines = [f"{job.name} {job.id[:12]}  {job.status}",
             f"epoch {p.get('epoch', 0)}/{p.get('epochs', job.progress.get('epochs', 0))}  step {step}/{total}"
             + (f"  {rate:,.0f} samples/s" if rate else "") + (f"  ETA {_duration(eta)}" if eta else "")]
    if losses:
        lines.append(f"loss {losses[-1]:.4g}  {sparkline(losses[-400:], width=40)}")
    return Text("\n".join(lines))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


@app.command("logs")
def logs(ctx: typer.Context, job_id: str,
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing until the job ends")] = False,
         attempt: Annotated[int | None, typer.Option(min=1, help="only this attempt's lines")] = None,
         as_json: JsonFlag = False) -> None:
    """A job's log lines (loop messages, warnings, a failure's traceback)."""
    with api_errors():
        job = client_of(ctx).jobs.get(job_id)
        for line in job.logs(follow=follow, attempt=attempt):
            if as_json:
                print(json.dumps(line), flush=True)
            else:
                when = time.strftime("%H:%M:%S", time.localtime(line["time"]))
                console.print(f"{when} #{line['attempt']} {line['level']:<7} {line['message']}", markup=False,
                              soft_wrap=True)


@app.command("tag")
def tag(ctx: typer.Context, job_id: str, tags: Annotated[list[str], typer.Argument(help="the job's new tags")],
        notes: Annotated[str | None, typer.Option(help="replace the notes too")] = None) -> None:
    """Set a job's tags (and notes)."""
    with api_errors():
        job = client_of(ctx).jobs.get(job_id).update(tags=tags, notes=notes)
    console.print(f"job {job.id}: tags {', '.join(job.tags) or '-'}")


@app.command("rm")
def remove(ctx: typer.Context, job_id: str) -> None:
    """Delete a job with its metrics, logs and checkpoints (a running one is cancelled)."""
    with api_errors():
        client_of(ctx).jobs.get(job_id).delete()
    console.print(f"deleted job {job_id}")


@app.command("cancel")
def cancel(ctx: typer.Context, job_id: str, as_json: JsonFlag = False) -> None:
    """Cancel a queued or running job (a running one stops at its next step)."""
    with api_errors():
        job = client_of(ctx).jobs.get(job_id).cancel()
    print_json(job.raw) if as_json else console.print(f"job {job.id}: {job.status}"
                                                      + (" (stopping)" if job.raw.get("cancel_requested")
                                                         and job.status == "running" else ""))


def download(ctx: typer.Context, job_id: str,
             output: Annotated[Path | None, typer.Option("--output", "-o", help="file or directory")] = None,
             checkpoint: Annotated[str, typer.Option(help="latest, best or a checkpoint id")] = "latest") -> None:
    """Download a job's checkpoint as .safetensors."""
    with api_errors():
        path = client_of(ctx).jobs.get(job_id).download(output, checkpoint=checkpoint)
    console.print(f"saved {path}")
