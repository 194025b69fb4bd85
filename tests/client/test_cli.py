"""The user's command line as a real process against the running service (the embedded
default): readable in 80 columns, ``--json`` parses, and the exit codes say what happened
(0 ok, 1 the job failed, 2 usage, 3 API error)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.e2e.helpers import MLP_SPEC

pytestmark = pytest.mark.e2e


@pytest.fixture
def trainyard(stack):
    env = {**os.environ, "TRAINYARD_URL": stack.base_url, "COLUMNS": "80", "TERM": "xterm"}

    def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "trainyard.cli", *args], env=env, capture_output=True,
                              text=True, timeout=timeout)

    return run


def _fits_80_columns(text: str) -> bool:
    return all(len(line) <= 80 for line in text.splitlines())


def _job_file(tmp_path, dataset_id: str, **training) -> str:
    body = {"name": "cli-job", "dataset_id": dataset_id, "model": MLP_SPEC,
            "training": {"epochs": 2, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0.005}, **training}}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_the_readme_flow_from_a_shell(trainyard, tmp_path):
    x = np.random.default_rng(0).random((120, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", inputs=x, targets=np.arange(120) % 10)
    up = trainyard("datasets", "upload", str(tmp_path / "data.npz"), "--name", "cli-data", "--json")
    assert up.returncode == 0, up.stderr
    dataset = json.loads(up.stdout)
    assert (dataset["num_samples"], dataset["input_shape"]) == (120, [8, 8])
    ls = trainyard("datasets", "ls")
    assert ls.returncode == 0 and "cli-data" in ls.stdout and _fits_80_columns(ls.stdout)

    watched = trainyard("submit", _job_file(tmp_path, dataset["id"]), "--watch")
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout and "loss" in watched.stdout and _fits_80_columns(watched.stdout)

    jobs = json.loads(trainyard("jobs", "ls", "--json", "--status", "succeeded").stdout)
    job_id = jobs[0]["id"]
    table = trainyard("jobs", "ls")
    assert job_id[:8] in table.stdout and _fits_80_columns(table.stdout)
    show = trainyard("jobs", "show", job_id)
    assert show.returncode == 0 and "val_loss" in show.stdout and _fits_80_columns(show.stdout)
    logs = trainyard("jobs", "logs", job_id)
    assert logs.returncode == 0 and "attempt 1" in logs.stdout
    events = [json.loads(line) for line in trainyard("jobs", "watch", job_id, "--json").stdout.splitlines()]
    assert events[-1]["event"] == "end" and any(e["event"] == "metric" for e in events)

    out = tmp_path / "weights"
    out.mkdir()
    dl = trainyard("download", job_id, "-o", str(out))
    assert dl.returncode == 0, dl.stderr
    assert [p.suffix for p in out.iterdir()] == [".safetensors"]


def test_exit_codes(trainyard, tmp_path):
    up = json.loads(trainyard("datasets", "builtin", "digits", "--limit", "64", "--json").stdout)
    failing = trainyard("submit", _job_file(tmp_path, up["id"], optimizer={"type": "SGD", "lr": 1e38}), "--watch")
    assert failing.returncode == 1 and "failed" in failing.stderr
    bad = trainyard("submit", _job_file(tmp_path, up["id"], epochs=0))
    assert bad.returncode == 3 and "/training/epochs" in bad.stderr
    assert trainyard("jobs", "show", "no-such-job").returncode == 3
    assert trainyard("jobs", "ls", "--limit", "0").returncode == 2
    assert trainyard("no-such-command").returncode == 2


def test_tags_sweeps_and_deletion_from_a_shell(trainyard, tmp_path):
    ds = json.loads(trainyard("datasets", "builtin", "iris", "--json").stdout)
    base = {"name": "iris", "dataset_id": ds["id"], "model": {"zoo": "mlp"},
            "training": {"epochs": 2, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.01}}}
    config = {"name": "cli-sweep", "base": base, "method": "grid", "metric": {"name": "val_loss", "goal": "minimize"},
              "parameters": {"training.optimizer.lr": {"values": [0.01, 0.05]}}}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(config))
    made = trainyard("sweeps", "create", str(path), "--watch")
    assert made.returncode == 0, made.stderr
    assert "finished" in made.stdout and "best" in made.stdout and _fits_80_columns(made.stdout)
    sweep_id = json.loads(trainyard("sweeps", "ls", "--json").stdout)[0]["id"]
    shown = json.loads(trainyard("sweeps", "show", sweep_id, "--json").stdout)
    job_id = shown["best"]["job_id"]
    assert trainyard("jobs", "tag", job_id, "best", "iris").returncode == 0
    tagged = json.loads(trainyard("jobs", "ls", "--tag", "best", "--json").stdout)
    assert [j["id"] for j in tagged] == [job_id] and tagged[0]["tags"] == ["best", "iris"]
    assert trainyard("jobs", "rm", job_id).returncode == 0
    assert trainyard("jobs", "show", job_id).returncode == 3
