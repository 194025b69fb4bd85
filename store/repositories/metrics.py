"""Metrics: scalar rows per step and per epoch, written in batches, read back whole or as an
incremental, downsampled history.

A *series* is one job's rows of one kind and name. Every row carries ``level``, its place in
a min/max pyramid over its series: at level L the steps fall into aligned blocks of 2**L
steps, and a row's level is the largest L at which it holds its block's minimum or maximum
((value, step) order breaks ties; past the level where one block holds the whole series the
two extremes get ``TOP``). Holding an extreme of a block means holding it in every smaller
block inside, so the rows at ``level >= L`` are exactly the minimum and maximum of every
level-L block. A million-step history therefore downsamples to 2,000 points by reading about
2,000 rows through ``ix_metrics_series_level`` instead of scanning a million.

``add_many`` and ``delete_after`` keep the levels exact: appending to a series (steps past
its last one, the worker's case) reads the extremes of the O(log steps) aligned blocks that
tile what is already there, writing into the middle of a series re-levels all of it. Write
metric rows only through them.
"""
from __future__ import annotations

import numbers
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import bindparam, delete, func, literal_column, select, text, union_all, update
from sqlalchemy.orm import Session

from store.models import Job, Metric

TOP = 31  # steps are 32-bit: one block of 2**31 steps holds any series
MAX_STEP = 2**31 - 1
KINDS = ("epoch", "step")

_table = Metric.__table__


def add_many(session: Session, *, job_id: str, rows: Iterable[dict]) -> int:
    """Insert rows of ``{kind, name, epoch, step, value}`` in one statement, with their
    pyramid levels (and re-level the rows already there that the new ones displace)."""
    payload = [{"job_id": job_id, **row} for row in rows]
    if not payload:
        return 0
    _lock_job(session, job_id)
    by_series: dict[tuple[str, str], list[dict]] = {}
    for row in payload:
        if not (isinstance(row["step"], numbers.Integral) and 0 <= row["step"] <= MAX_STEP):
            raise ValueError(f"metric step {row['step']!r} is not an integer in [0, {MAX_STEP}]")
        by_series.setdefault((row["kind"], row["name"]), []).append(row)
    changed: list[dict] = []
    for (kind, name), new in by_series.items():
        changed += _level_new_rows(session, job_id, kind, name, new)
    session.connection().execute(_table.insert(), payload)  # Core executemany: no ORM bulk-insert bookkeeping
    _set_levels(session, changed)
    return len(payload)


def for_job(session: Session, *, job_id: str, kind: str | None = None) -> list[Metric]:
    query = select(Metric).where(Metric.job_id == job_id)
    if kind:
        query = query.where(Metric.kind == kind)
    return list(session.scalars(query.order_by(Metric.step, Metric.epoch, Metric.id)))


def delete_after(session: Session, *, job_id: str, step: int) -> int:
    """Drop rows past ``step``: what a lost attempt logged after its last checkpoint."""
    _lock_job(session, job_id)
    count = session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step)).rowcount
    if count and step >= 0:
        # the blocks that held the dropped rows lost extremes: re-level what tiles [0, step]
        changed: list[dict] = []
        for kind, name in series_names(session, job_id=job_id):
            old = _extremes(session, job_id, kind, name, _spans(0, min(step, MAX_STEP)))
            changed += _relevel(old, [])
        _set_levels(session, changed)
    return count


def series_names(session: Session, *, job_id: str) -> list[tuple[str, str]]:
    """The job's series as (kind, name), sorted: a loose scan of the unique index (one
    probe per name, however many rows each has)."""
    probe = "SELECT min(m.name) FROM metrics m WHERE m.job_id = :job AND m.kind = {kind}"
    sql = text(
        "WITH RECURSIVE n(kind, name) AS ("
        + " UNION ALL ".join(f"SELECT '{k}', ({probe.format(kind=repr(k))})" for k in KINDS)
        + f" UNION ALL SELECT n.kind, ({probe.format(kind='n.kind')} AND m.name > n.name)"
        " FROM n WHERE n.name IS NOT NULL)"
        " SELECT kind, name FROM n WHERE name IS NOT NULL ORDER BY kind, name"
    )
    return [(k, n) for k, n in session.execute(sql, {"job": job_id})]


@dataclass
class Series:
    """One series' points (parallel lists, in step order), the largest step among the rows
    they were taken from (None when there were none) and whether they are only some of them."""

    kind: str
    name: str
    step: list[int] = field(default_factory=list)
    epoch: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    last_step: int | None = None
    downsampled: bool = False


def history(session: Session, *, job_id: str, series: Iterable[tuple[str, str]], after_step: int | None = None,
            until_step: int | None = None, max_points: int | None = None) -> list[Series]:
    """The given series' (kind, name) rows with ``after_step < step <= until_step``, in at most
    three statements whatever their number: each series' first and last row (one snapshot,
    so one cut across series: the worker writes a flush's rows of every series in one
    transaction), then the rows of those that fit ``max_points`` and the block extremes of
    those that do not. Downsampled (``max_points`` >= 2), a series keeps its first and last
    row and the minimum and maximum of each aligned block of 2**L steps, for the smallest L
    that fits (so a bucket is at most twice as wide as the budget allows)."""
    keys = list(series)
    out = [Series(kind, name) for kind, name in keys]
    if not keys:
        return out
    if max_points is not None and max_points < 2:
        raise ValueError("max_points must be at least 2")
    conn = session.connection()  # Core rows: no ORM row processing for what can be a million

    def where(i: int, hi: int | None = None) -> list:
        kind, name = keys[i]
        cond = [Metric.job_id == job_id, Metric.kind == kind, Metric.name == name]
        if after_step is not None:
            cond.append(Metric.step > after_step)
        hi = until_step if hi is None else hi
        if hi is not None:
            cond.append(Metric.step <= hi)
        return cond

    def tagged(i: int, query, *cols):
        return select(literal_column(str(i)).label("i"), *cols).where(*query)

    cols = (Metric.step, Metric.epoch, Metric.value)
    if max_points is None:
        raw = list(range(len(keys)))
    else:
        ends = [
            select(sub.c.i, literal_column(str(end)).label("end"), sub.c.step, sub.c.epoch, sub.c.value)
            for i in range(len(keys)) for end, order in ((0, Metric.step), (1, Metric.step.desc()))
            for sub in [tagged(i, where(i), *cols).order_by(order).limit(1).subquery()]
        ]
        bounds: dict[int, list] = {}
        for i, end, step, epoch, value in conn.execute(_union(ends)):
            bounds.setdefault(i, [None, None])[end] = (step, epoch, value)
        raw, sampled = [], []
        for i, (first, last) in bounds.items():
            out[i].last_step = last[0]
            (raw if last[0] - first[0] + 1 <= max_points else sampled).append(i)  # steps are unique
        _downsample(conn, job_id, keys, out, {i: bounds[i] for i in sampled}, max_points)
    if raw:
        query = _union([tagged(i, where(i, hi=out[i].last_step), *cols) for i in raw]).subquery()
        for i, step, epoch, value in conn.execute(select(query).order_by(query.c.i, query.c.step)):
            s = out[i]
            s.step.append(step)
            s.epoch.append(epoch)
            s.value.append(value)
        for i in raw:
            if out[i].step:
                out[i].last_step = out[i].step[-1]
    return out


def series(session: Session, *, job_id: str, kind: str, name: str, after_step: int | None = None,
           until_step: int | None = None, max_points: int | None = None) -> Series:
    """One series' history (see ``history``)."""
    return history(session, job_id=job_id, series=[(kind, name)], after_step=after_step, until_step=until_step,
                   max_points=max_points)[0]


def _downsample(conn, job_id: str, keys: list[tuple[str, str]], out: list[Series], bounds: dict[int, list],
                max_points: int) -> None:
    """Fill ``out[i]`` for the series in ``bounds`` ({i: [first, last] (step, epoch, value)})
    with their first and last rows and their block extremes, read in one statement."""
    buckets = (max_points - 2) // 2  # each gives its minimum and maximum
    plans, branches = {}, []
    for i, (first, last) in bounds.items():
        lo, hi = first[0], last[0]
        if buckets:
            plans[i] = level = next(lv for lv in range(TOP + 1) if (hi >> lv) - (lo >> lv) + 1 <= buckets)
            branches += _extremes_branches(job_id, *keys[i], _bucket_spans(lo, hi, level), tag=i)
    best: dict[int, dict[int, list]] = {i: {} for i in bounds}
    for i, _, step, epoch, value, _ in (conn.execute(_union(branches)) if branches else ()):
        row, level = (step, epoch, value), plans[i]
        b = best[i].get(step >> level)
        if b is None:
            best[i][step >> level] = [row, row]
            continue
        if (value, step) < (b[0][2], b[0][0]):
            b[0] = row
        if (value, step) > (b[1][2], b[1][0]):
            b[1] = row
    for i, (first, last) in bounds.items():
        points = {first[0]: first, last[0]: last}
        points.update((r[0], r) for pair in best[i].values() for r in pair)
        s = out[i]
        s.downsampled = True
        for step in sorted(points):
            s.step.append(step)
            s.epoch.append(points[step][1])
            s.value.append(points[step][2])


def _union(selects: list):
    return selects[0] if len(selects) == 1 else union_all(*selects)


# -- the pyramid -------------------------------------------------------------------------------

def levels(steps, values) -> np.ndarray:
    """Each row's pyramid level (int16), for rows with distinct steps in [0, 2**31) in any
    order: bottom-up, each level's block extremes are the extremes of its two halves'."""
    steps = np.asarray(steps, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    n = len(steps)
    out = np.zeros(n, dtype=np.int16)
    if n <= 1:
        out[:] = TOP
        return out
    order = np.argsort(steps, kind="stable")
    block = steps[order]
    by_rank = np.lexsort((block, values[order]))  # positions (in step order) by (value, step)
    rank = np.empty(n, dtype=np.int64)
    rank[by_rank] = np.arange(n)
    low = high = rank  # per block: the ranks of its minimum and maximum
    level = np.zeros(n, dtype=np.int16)
    for lv in range(1, TOP + 1):
        block = block >> 1
        starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
        block, low, high = block[starts], np.minimum.reduceat(low, starts), np.maximum.reduceat(high, starts)
        top = len(block) == 1
        level[by_rank[low]] = TOP if top else lv
        level[by_rank[high]] = TOP if top else lv
        if top:
            break
    out[order] = level
    return out


def _spans(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """The maximal aligned blocks tiling steps [lo, hi], as (level, first, last)."""
    out = []
    while lo <= hi:
        lv = TOP if lo == 0 else min(TOP, (lo & -lo).bit_length() - 1)
        while lo + (1 << lv) - 1 > hi:
            lv -= 1
        out.append((lv, lo, lo + (1 << lv) - 1))
        lo += 1 << lv
    return out


def _bucket_spans(lo: int, hi: int, level: int) -> list[tuple[int, int, int]]:
    """[lo, hi] tiled by the level-``level`` buckets: the whole ones as one span of blocks at
    that level, the partial ones at the ends by smaller aligned blocks."""
    k0, k1 = lo >> level, hi >> level
    if k0 == k1:
        return _spans(lo, hi)
    spans = _spans(lo, ((k0 + 1) << level) - 1)
    if k1 > k0 + 1:
        spans.append((level, (k0 + 1) << level, (k1 << level) - 1))
    return spans + _spans(k1 << level, hi)


def _extremes(session: Session, job_id: str, kind: str, name: str, spans: list[tuple[int, int, int]]) -> list:
    """The minimum and maximum row of every block in ``spans`` (contiguous runs of aligned
    blocks, each run at one level), as rows (tag, id, step, epoch, value, level)."""
    branches = _extremes_branches(job_id, kind, name, spans)
    return session.connection().execute(_union(branches)).all() if branches else []


def _extremes_branches(job_id: str, kind: str, name: str, spans: list[tuple[int, int, int]], tag: int = 0) -> list:
    """SELECTs of the extremes of the blocks in ``spans``: inside a level-L block, the rows
    at ``level >= L``. One index range per (run of steps, levels), to be run as a UNION ALL:
    SQLite takes each branch through the index (an OR of them it scans in place)."""
    return [
        select(literal_column(str(tag)).label("i"), Metric.id, Metric.step, Metric.epoch, Metric.value,
               Metric.level)
        .where(Metric.job_id == job_id, Metric.kind == kind, Metric.name == name, Metric.level.in_(lvs),
               Metric.step.between(first, last))
        for (first, last), lvs in _runs_by_level(spans).items()
    ]  # (IN lists expand at execution: one compiled statement per branch count)


def _runs_by_level(spans: list[tuple[int, int, int]]) -> dict[tuple[int, int], list[int]]:
    """{(first, last): levels}: for each level v, the runs of steps covered by the blocks of
    level <= v. A row at level v is an extreme of the block holding it iff that block's level
    is <= v, so these (step run, level) ranges select exactly the blocks' extremes."""
    terms: dict[tuple[int, int], list[int]] = {}
    for v in range(TOP + 1):
        runs: list[list[int]] = []
        for lv, first, last in spans:
            if lv > v:
                runs.append([])
            elif runs and runs[-1] and runs[-1][1] + 1 == first:
                runs[-1][1] = last
            else:
                runs.append([first, last])
        for run in runs:
            if run:
                terms.setdefault((run[0], run[1]), []).append(v)
    return terms


def _level_new_rows(session: Session, job_id: str, kind: str, name: str, new: list[dict]) -> list[dict]:
    """Set each new row's ``level``; return the level changes of rows already stored."""
    where = (Metric.job_id == job_id, Metric.kind == kind, Metric.name == name)
    first = min(r["step"] for r in new)
    last_old = session.scalar(select(func.max(Metric.step)).where(*where))
    if last_old is None:
        old = []
    elif last_old < first:  # an append: only the extremes of the blocks tiling [0, first) matter
        old = _extremes(session, job_id, kind, name, _spans(0, first - 1))
    else:  # into the middle of the series: re-level all of it
        old = list(session.execute(select(Metric.id, Metric.step, Metric.epoch, Metric.value, Metric.level)
                                   .where(*where)))
    return _relevel(old, new)


def _relevel(old: list, new: list[dict]) -> list[dict]:
    """Levels over ``old`` (stored rows) and ``new`` (dicts, given theirs here). Over the
    extremes of the blocks tiling a prefix plus whatever follows it, the levels come out as
    over the whole series: every larger block is made of those blocks and the new rows."""
    lv = levels([o.step for o in old] + [r["step"] for r in new], [o.value for o in old] + [r["value"] for r in new])
    for row, level in zip(new, lv[len(old):].tolist()):
        row["level"] = level
    return [{"b_id": o.id, "b_level": level} for o, level in zip(old, lv[:len(old)].tolist()) if o.level != level]


def _set_levels(session: Session, changed: list[dict]) -> None:
    if changed:
        session.execute(update(_table).where(_table.c.id == bindparam("b_id")).values(level=bindparam("b_level")),
                        changed)


def _lock_job(session: Session, job_id: str) -> None:
    """Serialize writers of one job's metrics (levels are read, then written): the job row's
    FOR NO KEY UPDATE lock on PostgreSQL, which the worker's progress update holds anyway;
    SQLite's write transactions are serial already."""
    session.execute(select(Job.id).where(Job.id == job_id).with_for_update(key_share=True))


def _put(out: Series, rows: Iterable) -> None:
    """Append (step, epoch, value) rows."""
    for step, epoch, value in rows:
        out.step.append(step)
        out.epoch.append(epoch)
        out.value.append(value)
