"""``trainyard``: the operator's commands (serve, api, worker, migrate) and the user's
(datasets, submit, jobs, download), built on typer and rich. Exit codes: 0 ok, 1 the job
failed, 2 usage, 3 API error."""
from __future__ import annotations

import sys
from typing import Annotated

import typer

from trainyard.cli import datasets, jobs, server, sweeps

app = typer.Typer(name="trainyard", help="Training as a service.", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False, context_settings={"max_content_width": 80})


@app.callback()
def _options(ctx: typer.Context,
             url: Annotated[str | None, typer.Option(envvar="TRAINYARD_URL", help="the API (default "
                                                     "http://127.0.0.1:8000)")] = None,
             api_key: Annotated[str | None, typer.Option(envvar="TRAINYARD_API_KEY", help="your API key")] = None,
             ) -> None:
    ctx.obj = {"url": url, "api_key": api_key}


for command in (server.serve, server.api, server.worker, server.migrate):
    app.command(rich_help_panel="Run the service")(command)
app.command(rich_help_panel="Use the service")(jobs.submit)
app.command(rich_help_panel="Use the service")(jobs.download)
app.add_typer(datasets.app, name="datasets", rich_help_panel="Use the service")
app.add_typer(jobs.app, name="jobs", rich_help_panel="Use the service")
app.add_typer(sweeps.app, name="sweeps", rich_help_panel="Use the service")


def main(argv: list[str] | None = None) -> int:
    """The console script; returns the exit code (2 for a usage error)."""
    try:
        app(args=argv, prog_name="trainyard", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
