"""/v1/jobs/compare (runs side by side: config diff, final metrics, curves) and /v1/jobs/groups
(runs that share config values, e.g. seeds of one learning rate, aggregated).

Included before the jobs router, so that these paths are not read as ``/v1/jobs/{job_id}``.
A job's config is what GET /v1/jobs/{id} shows (``model``, and ``training`` with defaults
filled), flattened to dotted paths: ``training.optimizer.lr``, ``model.layers.1.out_features``
(lists by index). Curves come from ``store.repositories.metrics.history``, the reads behind
GET /v1/jobs/{id}/metrics (and its downsampling)."""
from __future__ import annotations

import difflib
import json
import math
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from api.auth import OwnerDep
from api.deps import SessionDep
from api.errors import FieldError
from api.schemas.compare import ComparedJob, Comparison, ConfigDiff, Curve, Group, GroupCurve, Groups, Stats
from api.schemas.jobs import JobOut
from store.models import Job
from store.repositories import compare, metrics

router = APIRouter(prefix="/jobs", tags=["compare"])

MAX_COMPARED = 20
MAX_GROUPED = 1000
_MISSING = object()

JobStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class CompareQuery(BaseModel):
    """What GET /v1/jobs/compare takes; any other query parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    ids: str = Field(description=f"2 to {MAX_COMPARED} comma-separated ids of the caller's jobs")
    names: str | None = Field(None, description="comma-separated metric names (default: every metric of the jobs)")
    max_points: int = Field(500, ge=2, le=10_000, description="per job and metric: points kept by downsampling")


class GroupsQuery(BaseModel):
    """What GET /v1/jobs/groups takes; any other query parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(description="comma-separated config paths (training.optimizer.lr,...): the group key")
    metric: str = Field(description="the metric aggregated: a name (val_loss, loss, ...) or '<kind>:<name>'")
    ids: str | None = Field(None, description=f"only these jobs (at most {MAX_GROUPED}, comma-separated)")
    status: JobStatusName | None = Field(None, description="only jobs in this status")
    max_points: int = Field(500, ge=2, le=10_000, description="at most this many points per group curve")


@router.get("/compare", response_model=Comparison)
def compare_jobs(session: SessionDep, owner: OwnerDep, query: Annotated[CompareQuery, Query()]) -> Response:
    """The jobs side by side: where their configs differ, their final metrics, and each
    metric's curve per job (downsampled to ``max_points``, on the step axis)."""
    ids = _id_list(query.ids, 2, MAX_COMPARED)
    rows = _owned_or_404(session, owner, ids)
    shown = [JobOut.from_row(j) for j in rows]
    flat = {j.id: flatten({"model": j.model, "training": j.training}) for j in shown}
    names = {j.id: metrics.series_names(session, job_id=j.id) for j in rows}
    chosen = _chosen(_series_keys(sorted({kn for per in names.values() for kn in per})), query.names)
    curves: dict[str, dict[str, Curve]] = {key: {} for key in chosen}
    for job in rows:
        have = set(names[job.id])
        wanted = [(key, kn) for key, kn in chosen.items() if kn in have]
        loaded = metrics.history(session, job_id=job.id, series=[kn for _, kn in wanted],
                                 max_points=query.max_points)
        for (key, _), s in zip(wanted, loaded):
            curves[key][job.id] = Curve(step=s.step, epoch=s.epoch, value=s.value)
    body = Comparison(
        jobs=[ComparedJob(id=j.id, name=j.name, status=j.status) for j in shown],
        config=diff(flat),
        final_metrics={j.id: j.metrics for j in shown},
        curves=curves,
    )
    return Response(body.model_dump_json(), media_type="application/json")


@router.get("/groups", response_model=Groups)
def group_jobs(session: SessionDep, owner: OwnerDep, query: Annotated[GroupsQuery, Query()]) -> Response:
    """The owner's jobs (only ``ids`` / in ``status`` when given) grouped by their values at
    the ``by`` paths, with the metric's final value and curve aggregated over each group."""
    paths = list(dict.fromkeys(p.strip() for p in query.by.split(",") if p.strip()))
    if not paths:
        raise FieldError(["query", "by"], "by names no config path (e.g. by=training.optimizer.lr)")
    ids = None if query.ids is None else _id_list(query.ids, 1, MAX_GROUPED)
    if ids is not None:
        _owned_or_404(session, owner, ids)
    rows = compare.selection(session, owner=owner, ids=ids, status=query.status, limit=MAX_GROUPED + 1)
    if len(rows) > MAX_GROUPED:
        raise FieldError(["query", "ids"], f"the selection holds more than {MAX_GROUPED} jobs; name at most "
                                           f"{MAX_GROUPED} with ids= (or narrow it with status=)")
    if not rows:
        return Response(Groups(by=paths, metric=query.metric, groups=[]).model_dump_json(),
                        media_type="application/json")
    configs = {}
    for j in rows:
        shown = JobOut.from_row(j)
        configs[j.id] = {"model": shown.model, "training": shown.training}
    keys = {j.id: [lookup(configs[j.id], p) for p in paths] for j in rows}
    for i, path in enumerate(paths):
        if all(k[i] is _MISSING for k in keys.values()):
            known = sorted({p for c in configs.values() for p in flatten(c)})
            close = difflib.get_close_matches(path, known, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (paths look like training.seed)"
            raise FieldError(["query", "by"], f"no job in the selection has the config path {path!r}{hint}")
    kind, name = _metric(session, rows, query.metric)
    # an epoch series is small (a row per epoch) and grouped per epoch: read whole; a step
    # series with buckets no wider than the curve's blocks, so each run has points in each
    read = 2 * query.max_points + 2 if kind == "step" else None
    grouped: dict[tuple, list[Job]] = {}
    for j in rows:
        grouped.setdefault(tuple(_canon(v) for v in keys[j.id]), []).append(j)
    groups = []
    for gkey in sorted(grouped):
        members = grouped[gkey]
        series = [metrics.series(session, job_id=j.id, kind=kind, name=name, max_points=read)
                  if kind else metrics.Series("epoch", name) for j in members]
        finals = [_final(j, name, s) for j, s in zip(members, series)]
        first = keys[members[0].id]
        groups.append(Group(
            key={p: None if v is _MISSING else v for p, v in zip(paths, first)},
            job_ids=[j.id for j in members],
            final=stats(finals),
            curve=aggregate(series, "step" if kind == "step" else "epoch", query.max_points),
        ))
    body = Groups(by=paths, metric=query.metric, groups=groups)
    return Response(body.model_dump_json(), media_type="application/json")


# -- config paths ------------------------------------------------------------------------------

def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted path: leaf value}: dicts by key, lists by index; an empty dict or list, and a
    scalar, is a leaf."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def lookup(config: dict, path: str) -> Any:
    """The value (a leaf or a whole subtree) at a dotted path, or ``_MISSING``."""
    node: Any = config
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def diff(flat: dict[str, dict[str, Any]]) -> ConfigDiff:
    """Split the paths of every job's flattened config into those that differ (or that some
    job lacks: null there) and those all share, in the order they first appear."""
    order = list(dict.fromkeys(p for paths in flat.values() for p in paths))
    differs: dict[str, dict[str, Any]] = {}
    same: dict[str, Any] = {}
    for path in order:
        values = {jid: paths.get(path, _MISSING) for jid, paths in flat.items()}
        if all(v is not _MISSING for v in values.values()) and len({_canon(v) for v in values.values()}) == 1:
            same[path] = next(iter(values.values()))
        else:
            differs[path] = {jid: None if v is _MISSING else v for jid, v in values.items()}
    return ConfigDiff(differs=differs, same=same)


def _canon(value: Any) -> tuple:
    """An equality and ordering key: numbers by value (1 == 1.0, never True), then strings,
    booleans, other JSON, and missing/null last."""
    if value is _MISSING or value is None:
        return (4,)
    if isinstance(value, bool):
        return (2, value)
    if isinstance(value, (int, float)):
        return (0, float(value))
    if isinstance(value, str):
        return (1, value)
    return (3, json.dumps(value, sort_keys=True))


# -- ids and metrics ---------------------------------------------------------------------------

def _id_list(raw: str, lo: int, hi: int) -> list[str]:
    ids = list(dict.fromkeys(p.strip() for p in raw.split(",") if p.strip()))
    if not lo <= len(ids) <= hi:
        raise FieldError(["query", "ids"], f"ids names {len(ids)} distinct job id{'s' if len(ids) != 1 else ''}; "
                                           f"it takes {lo} to {hi}, comma-separated")
    return ids


def _owned_or_404(session, owner: str, ids: list[str]) -> list[Job]:
    """The owner's jobs ``ids`` in that order; a 404 naming those that are not (another
    owner's job is as unknown as a made-up id)."""
    found = compare.owned(session, owner=owner, ids=ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"job {missing[0]} not found" if len(missing) == 1
                            else f"jobs {', '.join(missing)} not found")
    return [found[i] for i in ids]


def _series_keys(names: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Response keys as GET /metrics names them: the name, or ``<kind>:<name>`` where both
    kinds use it; step series first."""
    both = {n for k, n in names if k == "step"} & {n for k, n in names if k == "epoch"}
    ordered = sorted(names, key=lambda kn: (kn[0] != "step", kn[1]))
    return {f"{k}:{n}" if n in both else n: (k, n) for k, n in ordered}


def _chosen(keys: dict[str, tuple[str, str]], names: str | None) -> dict[str, tuple[str, str]]:
    """The series ``names`` asks for (every one without it), as /metrics reads ``names``:
    a key, or a bare name meaning both kinds of it; a name no job has is a 422."""
    if names is None:
        return keys
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = ", ".join(keys) or "none yet"
    if not wanted:
        raise FieldError(["query", "names"], f"names lists no metric name; these jobs have: {known}")
    hit: set[str] = set()
    unknown = []
    for n in wanted:
        matches = [k for k, kn in keys.items() if k == n or kn[1] == n]
        hit.update(matches)
        if not matches:
            unknown.append(n)
    if unknown:
        raise FieldError(["query", "names"], f"unknown metric name{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; these jobs have: {known}")
    return {k: v for k, v in keys.items() if k in hit}


def _metric(session, rows: list[Job], raw: str) -> tuple[str | None, str]:
    """(kind, name) of ``metric`` among the jobs; kind None when only final metrics have it.
    A name no job has, or one both kinds use without ``<kind>:``, is a 422 naming metric."""
    raw = raw.strip()
    head, _, rest = raw.partition(":")
    given, name = (head, rest) if rest and head in metrics.KINDS else (None, raw)
    kinds = [k for k in compare.metric_kinds(session, job_ids=[j.id for j in rows], name=name)
             if given in (None, k)]
    in_final = given is None and any(name in (j.final_metrics or {}) for j in rows)
    if not kinds and not in_final:
        known = sorted({n for j in rows[:50] for _, n in metrics.series_names(session, job_id=j.id)}
                       | {n for j in rows for n in (j.final_metrics or {})})
        raise FieldError(["query", "metric"], f"no job in the selection has a metric {raw!r}; they have: "
                                              f"{', '.join(known) or 'none yet'}")
    if len(kinds) > 1:
        raise FieldError(["query", "metric"], f"{name!r} is both a step and an epoch metric: "
                                              f"name it 'step:{name}' or 'epoch:{name}'")
    return (kinds[0] if kinds else given), name


def _final(job: Job, name: str, s: metrics.Series) -> float | None:
    """The run's final value: its final metrics' (a finished run's last epoch), else the
    series' last point (a running job, a step metric)."""
    value = (job.final_metrics or {}).get(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return s.value[-1] if s.value else None


# -- aggregation -------------------------------------------------------------------------------

def stats(values: list[float | None]) -> Stats:
    """Mean, population std, min, max and count of the finite values."""
    a = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not len(a):
        return Stats(mean=None, std=None, min=None, max=None, n=0)
    return Stats(mean=float(np.mean(a)), std=float(np.std(a)), min=float(np.min(a)), max=float(np.max(a)),
                 n=len(a))


def aggregate(runs: list[metrics.Series], axis: Literal["step", "epoch"], max_points: int) -> GroupCurve:
    """The runs' curves aggregated per point of ``axis`` (step or epoch): the mean, population
    std, min, max and count of the runs' finite values there. With more than ``max_points``
    points between the first and the last, per aligned block of 2**L of them (the smallest L
    that fits), each run contributing the mean of its points in the block (of a step series
    read downsampled to 2 * max_points + 2: the extremes of its buckets, none wider than a block)."""
    per_run = []
    for s in runs:
        x = np.asarray(s.step if axis == "step" else s.epoch, dtype=np.int64)
        v = np.asarray(s.value, dtype=np.float64)
        ok = np.isfinite(v)
        if ok.any():
            per_run.append((x[ok], v[ok], np.asarray(s.step, dtype=np.int64)[ok],
                            np.asarray(s.epoch, dtype=np.int64)[ok]))
    if not per_run:
        return GroupCurve(axis=axis, step=[], epoch=[], mean=[], std=[], min=[], max=[], n=[])
    lo = min(int(x.min()) for x, *_ in per_run)
    hi = max(int(x.max()) for x, *_ in per_run)
    level = next(lv for lv in range(64) if (hi >> lv) - (lo >> lv) + 1 <= max_points)
    blocks = np.unique(np.concatenate([x >> level for x, *_ in per_run]))
    table = np.full((len(blocks), len(per_run)), np.nan)
    last_step = np.full(len(blocks), np.iinfo(np.int64).min)
    last_epoch = np.full(len(blocks), np.iinfo(np.int64).min)
    for r, (x, v, st, ep) in enumerate(per_run):
        at = np.searchsorted(blocks, x >> level)
        sums = np.bincount(at, weights=v, minlength=len(blocks))
        counts = np.bincount(at, minlength=len(blocks))
        have = counts > 0
        table[have, r] = sums[have] / counts[have]
        np.maximum.at(last_step, at, st)
        np.maximum.at(last_epoch, at, ep)
    n = np.sum(~np.isnan(table), axis=1)
    return GroupCurve(
        axis=axis, step=last_step.tolist(), epoch=last_epoch.tolist(),
        mean=np.nanmean(table, axis=1).tolist(), std=np.nanstd(table, axis=1).tolist(),
        min=np.nanmin(table, axis=1).tolist(), max=np.nanmax(table, axis=1).tolist(), n=n.tolist(),
    )
