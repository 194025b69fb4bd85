"""How the command line prints: rich tables that fit an 80-column terminal, ``--json`` for
scripts, a loss sparkline, and the exit codes (0 ok, 1 job failed, 2 usage, 3 API error)."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from trainyard.client import ApiError, TrainyardError

OK, JOB_FAILED, USAGE, API_ERROR = 0, 1, 2, 3
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)
_BARS = "▁▂▃▄▅▆▇█"


JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON (for scripts)")]


def read_json(path: Path, what: str) -> Any:
    """The JSON in ``path``, or a usage error (exit 2) saying it is not ``what``."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        errors.print(f"[red]error:[/red] {path} is not {what}: {exc}")
        raise typer.Exit(USAGE) from None


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None = None) -> None:
    """``columns``: (key, header); long cells fold so the table fits the terminal."""
    t = Table(title=title, show_lines=False, header_style="bold", expand=False)
    for _, header in columns:
        t.add_column(header, overflow="fold")
    for row in rows:
        t.add_row(*[_cell(row.get(key)) for key, _ in columns])
    console.print(t)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """The shape of a series in ``width`` block characters (each the mean of its bucket)."""
    values = [v for v in values if v is not None]
    if not values:
        return ""
    if len(values) > width:
        size = len(values) / width
        values = [sum(b) / len(b) for b in (values[int(i * size):int((i + 1) * size)] for i in range(width)) if b]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(_BARS[min(len(_BARS) - 1, int((v - lo) / span * (len(_BARS) - 1)))] for v in values)


@contextmanager
def api_errors() -> Iterator[None]:
    """An API error becomes a message naming the field and exit code 3."""
    try:
        yield
    except ApiError as exc:
        where = f" ({exc.pointer})" if exc.pointer and exc.pointer != "/" else ""
        errors.print(f"[red]error {exc.status_code}{where}:[/red] {exc.message}")
        raise typer.Exit(API_ERROR) from None
    except TrainyardError as exc:
        errors.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(API_ERROR) from None


def run(action: Callable[[], Any]) -> Any:
    with api_errors():
        return action()
