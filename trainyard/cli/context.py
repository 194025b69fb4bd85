"""The client a command talks through, made once from the global options."""
from __future__ import annotations

import typer

from trainyard.client import Client


def client_of(ctx: typer.Context) -> Client:
    root = ctx.find_root()
    if not isinstance(root.obj, Client):
        options = root.obj or {}
        root.obj = Client(options.get("url"), options.get("api_key"))
        root.call_on_close(root.obj.close)
    return root.obj
