"""``client.jobs``: submit (a JSON spec or an ``engine.nn`` module), list and read jobs; a
``Job`` follows its run live (``wait``, ``events``, ``logs``), and gives back its metrics,
checkpoints and the trained model."""
from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from trainyard.client.datasets import Dataset
from trainyard.client.errors import JobFailed
from trainyard.client.http import Http

TERMINAL = ("succeeded", "failed", "cancelled")


class Job:
    """A job as last read from the API, with the calls that act on it. ``refresh()`` reads
    it again; ``wait()`` and ``events()`` keep it current from the live stream."""

    def __init__(self, http: Http, body: dict[str, Any]):
        self._http = http
        self._update(body)

    def _update(self, body: dict[str, Any]) -> None:
        self.raw = body
        self.id: str = body["id"]
        self.name: str = body["name"]
        self.status: str = body["status"]
        self.error: str | None = body.get("error")
        self.attempt: int = body.get("attempt", 0)
        self.progress: dict[str, Any] = body.get("progress", {})
        self.final_metrics: dict[str, Any] = {k: v for k, v in body.get("metrics", {}).items() if v is not None}
        self.event_seq: int = body.get("event_seq", 0)
        self.tags: list[str] = body.get("tags", [])
        self.notes: str | None = body.get("notes")

    def __repr__(self) -> str:
        return f"Job({self.id!r}, name={self.name!r}, status={self.status!r})"

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def refresh(self) -> Job:
        self._update(self._http.json("GET", f"/v1/jobs/{self.id}"))
        return self

    def cancel(self) -> Job:
        """A queued job is cancelled at once, a running one stops at its next step."""
        self._update(self._http.json("POST", f"/v1/jobs/{self.id}/cancel"))
        return self

    def update(self, *, tags: list[str] | None = None, notes: str | None = None) -> Job:
        """Replace the job's tags and/or notes (the only editable fields)."""
        body = {**({"tags": tags} if tags is not None else {}), **({"notes": notes} if notes is not None else {})}
        self._update(self._http.json("PATCH", f"/v1/jobs/{self.id}", json=body))
        return self

    def delete(self) -> None:
        """Delete the job with its metrics, logs and checkpoints (a running one is cancelled)."""
        self._http.request("DELETE", f"/v1/jobs/{self.id}")

    # -- live -------------------------------------------------------------------------------
    def events(self, after: int | None = 0) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, data) of each event from after ``after`` (0: the whole history) until the
        job ends; reconnects where it left off if the connection drops."""
        last = after
        while True:
            try:
                with self._http.events(f"/v1/jobs/{self.id}/events", last_event_id=last) as stream:
                    for event in stream:
                        if event.event == "message" and not event.data:
                            continue  # a keep-alive comment, as httpx-sse passes it on
                        last = int(event.id) if event.id else last
                        data = json.loads(event.data) if event.data else {}
                        if event.event == "status":
                            self.status, self.error = data["status"], data.get("error")
                        elif event.event == "progress":
                            self.progress = {**self.progress, **data}
                        yield event.event, data
                        if event.event == "end":
                            self.refresh()
                            return
            except (httpx.RemoteProtocolError, httpx.ReadError):
                continue  # the stream dropped: come back after the last event seen

    def wait(self, *, progress: bool = False, raise_on_failure: bool = False,
             on_event: Callable[[str, dict[str, Any]], None] | None = None) -> Job:
        """Follow the stream until the job ends; ``progress`` draws a progress bar (epoch,
        step, loss, ETA) on the terminal."""
        bar = _ProgressBar(self) if progress else None
        try:
            for kind, data in self.events(after=self.event_seq):
                if bar:
                    bar.update(kind, data)
                if on_event:
                    on_event(kind, data)
        finally:
            if bar:
                bar.close()
        if raise_on_failure and self.status != "succeeded":
            raise JobFailed(self)
        return self

    def logs(self, *, follow: bool = False, attempt: int | None = None) -> Iterator[dict[str, Any]]:
        """Log lines ({seq, attempt, time, level, logger, message}); ``follow`` keeps
        yielding new ones until the job ends."""
        after = 0
        while True:
            params = {"after": after, **({"attempt": attempt} if attempt else {})}
            page = self._http.json("GET", f"/v1/jobs/{self.id}/logs", params=params)
            yield from page["lines"]
            if page["last_seq"] == after:
                break
            after = page["last_seq"]
        if not follow:
            return
        for kind, data in self.events(after=after):
            if kind == "log" and (attempt is None or data["attempt"] == attempt):
                for line in data["lines"]:
                    yield {"attempt": data["attempt"], **line}

    # -- results ----------------------------------------------------------------------------
    def metrics(self, *, as_dataframe: bool | None = None, max_points: int | None = None) -> Any:
        """Step metrics as a dict of lists aligned on ``step`` ({"step": [...], "epoch": [...],
        "loss": [...], "lr": [...], ...}; None where a name has no value at a step), plus
        ``"epochs"``: the same for epoch metrics. A pandas DataFrame of the step metrics
        (with ``.attrs["epochs"]``) when pandas is installed, unless ``as_dataframe=False``."""
        params = {"max_points": max_points} if max_points else {}
        body = self._http.json("GET", f"/v1/jobs/{self.id}/metrics", params=params)
        steps, epochs = _wide(body, "step"), _wide(body, "epoch")
        if as_dataframe is None:
            try:
                import pandas  # noqa: F401
            except ImportError:
                as_dataframe = False
            else:
                as_dataframe = True
        if not as_dataframe:
            return {**steps, "epochs": epochs}
        import pandas as pd

        frame = pd.DataFrame(steps)
        frame.attrs["epochs"] = pd.DataFrame(epochs)
        return frame

    def checkpoints(self) -> list[dict[str, Any]]:
        return self._http.json("GET", f"/v1/jobs/{self.id}/checkpoints")["items"]

    def download(self, path: str | Path | None = None, *, checkpoint: str = "latest") -> Path:
        """Save checkpoint ``checkpoint`` (an id, ``latest`` or ``best``) as .safetensors;
        ``path`` may be a directory or a file name (default: the server's file name)."""
        response = self._http.request("GET", f"/v1/jobs/{self.id}/checkpoints/{checkpoint}/download")
        name = _filename(response.headers.get("content-disposition")) or f"job-{self.id}.safetensors"
        target = Path(path) if path is not None else Path(name)
        if target.is_dir():
            target = target / name
        target.write_bytes(response.content)
        return target

    def predict(self, inputs: Any, *, checkpoint: str = "latest") -> dict[str, Any]:
        """The trained model's outputs (and class probabilities and predictions per
        classification head) for ``inputs`` (an array: sent as base64)."""
        from trainyard.client.datasets import encode

        body = {"inputs": encode(inputs), "checkpoint": checkpoint}
        return self._http.json("POST", f"/v1/jobs/{self.id}/predict", json=body)

    def evaluate(self, dataset: Dataset | str, *, checkpoint: str = "latest", wait: bool = True,
                 poll_s: float = 0.5) -> dict[str, Any]:
        """Loss, metrics and confusion matrices over ``dataset``, computed on a worker."""
        dataset_id = dataset.id if isinstance(dataset, Dataset) else dataset
        ev = self._http.json("POST", f"/v1/jobs/{self.id}/evaluate",
                             json={"dataset_id": dataset_id, "checkpoint": checkpoint})
        while wait and ev["status"] in ("queued", "running"):
            time.sleep(poll_s)
            ev = self._http.json("GET", f"/v1/jobs/{self.id}/evaluations/{ev['id']}")
        return ev

    def export(self, path: str | Path, *, format: str = "onnx", checkpoint: str = "latest") -> Path:
        """Save the trained model as ONNX (or ``format="safetensors"``)."""
        response = self._http.request("GET", f"/v1/jobs/{self.id}/export",
                                      params={"format": format, "checkpoint": checkpoint})
        target = Path(path)
        target.write_bytes(response.content)
        return target

    def load_model(self, *, checkpoint: str = "latest"):
        """The trained model: an ``engine.nn`` module with the checkpoint's weights, in eval mode."""
        import engine
        from engine import spec

        plan = self.raw.get("plan") or self.refresh().raw.get("plan") or {}
        model = spec.build_model(self.raw["model"], plan.get("input_shape"), num_classes=plan.get("num_outputs"))
        blob = self._http.request("GET", f"/v1/jobs/{self.id}/checkpoints/{checkpoint}/download").content
        model.load_state_dict(engine.load(io.BytesIO(blob)))
        return model.eval()


class Jobs:
    def __init__(self, http: Http):
        self._http = http

    def submit(self, *, model: Any, dataset: Dataset | str, training: dict[str, Any], name: str | None = None
               ) -> Job:
        """Queue a job. ``model`` is a spec (dict) or an ``engine.nn`` module (turned into a
        spec by ``engine.spec.to_spec``); ``dataset`` a Dataset or its id."""
        if not isinstance(model, dict):
            from engine.spec import to_spec

            model = to_spec(model)
        dataset_id = dataset.id if isinstance(dataset, Dataset) else dataset
        body = {"name": name or "job", "dataset_id": dataset_id, "model": model, "training": training}
        return Job(self._http, self._http.json("POST", "/v1/jobs", json=body))

    def get(self, job_id: str) -> Job:
        return Job(self._http, self._http.json("GET", f"/v1/jobs/{job_id}"))

    def list(self, *, status: str | None = None, tags: list[str] | tuple[str, ...] = (), name: str | None = None,
             sweep: str | None = None, sort: str = "-created", limit: int | None = 100) -> list[Job]:
        """Your jobs, filtered (a job must carry every tag; ``name``: a substring) and sorted
        (``created``, ``name`` or ``metric:<name>``, ``-`` for descending); ``limit=None``
        pages through all of them."""
        params: list[tuple[str, Any]] = [("sort", sort), ("limit", min(limit or 1000, 1000))]
        params += [("tag", t) for t in tags]
        params += [(k, v) for k, v in (("status", status), ("q", name), ("sweep_id", sweep)) if v]
        out: list[Job] = []
        cursor = None
        while True:
            page = self._http.json("GET", "/v1/jobs", params=params + ([("cursor", cursor)] if cursor else []))
            out += [Job(self._http, j) for j in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out


def _wide(body: dict[str, Any], kind: str) -> dict[str, list]:
    """Series of one kind, aligned on their steps (or epochs)."""
    key = "step" if kind == "step" else "epoch"
    series = {name: s for name, s in body.get("series", {}).items() if s["kind"] == kind}
    if not series and kind == "step":  # an API without ``series``: the loss alone
        series = {"loss": {"step": [r["step"] for r in body["steps"]], "epoch": [r["epoch"] for r in body["steps"]],
                           "value": [r["loss"] for r in body["steps"]]}}
    index = sorted({x for s in series.values() for x in s[key]})
    at = {x: i for i, x in enumerate(index)}
    out: dict[str, list] = {key: index}
    if kind == "step":
        out["epoch"] = [None] * len(index)
    for name, s in sorted(series.items()):
        column = [None] * len(index)
        for i, x in enumerate(s[key]):
            column[at[x]] = s["value"][i]
            if kind == "step":
                out["epoch"][at[x]] = s["epoch"][i]
        out[name] = column
    return out


def _filename(disposition: str | None) -> str | None:
    if disposition and "filename=" in disposition:
        return disposition.split("filename=", 1)[1].strip().strip('"') or None
    return None


class _ProgressBar:
    """A rich progress bar fed by a job's events: epoch, step of total, loss, samples/s, ETA."""

    def __init__(self, job: Job):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.loss: float | None = None
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            TextColumn("{task.completed}/{task.total} steps"), TextColumn("{task.fields[info]}"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task(job.name, total=job.progress.get("total_steps") or None, info=job.status)
        self.bar.start()

    def update(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "metric":
            losses = [r["value"] for r in data["rows"] if r["name"] == "loss"]
            self.loss = losses[-1] if losses else self.loss
        elif kind == "progress":
            loss = f"loss {self.loss:.4g}" if self.loss is not None else ""
            self.bar.update(self.task, completed=data["step"], total=data["total_steps"],
                            info=f"epoch {data['epoch']}/{data['epochs']} {loss}")
        elif kind == "status":
            self.bar.update(self.task, info=data["status"])

    def close(self) -> None:
        self.bar.stop()
