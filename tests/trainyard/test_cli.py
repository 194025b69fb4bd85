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
    monkeypatch.setattr(os, "execve", lambda path, args, env: calls.append(list(args)))
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
    cli.main(["worker", "--concurrency", "2", "--gpus", "none"])
    assert execs == [worker_command("gpu-a.cpu", concurrency=2)]  # no GPUs: the CPU queue
    assert execs[0][execs[0].index("--queues") + 1] == "gpu-a.cpu"


def test_worker_environment_limits_the_processes_to_their_gpus():
    from trainyard.commands import worker_environment

    env, n = worker_environment("1,3", {"CUDA_VISIBLE_DEVICES": "4,5,6,7"})
    assert (env["CUDA_VISIBLE_DEVICES"], env["TRAINYARD_GPUS"], n) == ("5,7", "all", 2)
    env, n = worker_environment("all", {}, count=lambda: 8)
    assert (env["TRAINYARD_GPUS"], n) == ("all", 8) and "CUDA_VISIBLE_DEVICES" not in env
    env, n = worker_environment("none", {"CUDA_VISIBLE_DEVICES": "0"})
    assert (env["CUDA_VISIBLE_DEVICES"], n) == ("", 0)  # a CPU worker even on a GPU host
    with pytest.raises(ValueError, match="has 4 GPUs"):
        worker_environment("4", {"CUDA_VISIBLE_DEVICES": "4,5,6,7"})


def test_settings_from_reads_the_given_environment_only(monkeypatch):
    monkeypatch.setenv("TRAINYARD_QUEUE", "outer")
    inner = settings_from({"TRAINYARD_QUEUE": "inner", "DATABASE_URL": "sqlite:////tmp/x.db"})
    assert (inner.queue, inner.resolved_database_url) == ("inner", "sqlite:////tmp/x.db")
    assert os.environ["TRAINYARD_QUEUE"] == "outer"
