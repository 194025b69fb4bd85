"""The CLI takes its defaults from the settings and execs the command lines of
trainyard.commands (the same ones ``trainyard serve`` starts)."""
from __future__ import annotations

import os

import pytest

from config.settings import get_settings, settings_from
from trainyard import cli
from trainyard.commands import api_command, worker_command


@pytest.fixture
def execs(monkeypatch, tmp_path):
    calls: list[list[str]] = []
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setattr(os, "execv", lambda path, args: calls.append(list(args)))
    get_settings.cache_clear()
    yield calls
    get_settings.cache_clear()


def test_api_defaults_come_from_the_settings(monkeypatch, execs, tmp_path):
    monkeypatch.setenv("TRAINYARD_API_HOST", "127.0.0.2")
    monkeypatch.setenv("TRAINYARD_API_PORT", "8123")
    cli.main(["api"])
    assert execs == [api_command("127.0.0.2", 8123)]
    cli.main(["api", "--host", "0.0.0.0", "--port", "9000"])
    assert execs[-1] == api_command("0.0.0.0", 9000)
    assert (tmp_path / "cli.db").exists()  # migrated before the exec


def test_worker_listens_on_the_configured_queue(monkeypatch, execs):
    monkeypatch.setenv("TRAINYARD_QUEUE", "gpu-a")
    cli.main(["worker", "--concurrency", "2"])
    assert execs == [worker_command("gpu-a", concurrency=2)]
    assert execs[0][execs[0].index("--queues") + 1] == "gpu-a"


def test_settings_from_reads_the_given_environment_only(monkeypatch):
    monkeypatch.setenv("TRAINYARD_QUEUE", "outer")
    inner = settings_from({"TRAINYARD_QUEUE": "inner", "DATABASE_URL": "sqlite:////tmp/x.db"})
    assert (inner.queue, inner.resolved_database_url) == ("inner", "sqlite:////tmp/x.db")
    assert os.environ["TRAINYARD_QUEUE"] == "outer"
