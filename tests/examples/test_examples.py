"""examples/*.py are PyTorch scripts; CI runs them with only `import torch` changed to
`import engine as torch` and checks what they reach (test accuracy >= 0.95)."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _on_engine(name: str, tmp_path: Path) -> Path:
    """The example with its one `import torch` line swapped; nothing else may mention torch imports."""
    src = (EXAMPLES / name).read_text()
    assert re.findall(r"^(?:import|from) torch\b.*$", src, flags=re.MULTILINE) == ["import torch"], name
    out = tmp_path / name
    out.write_text(src.replace("\nimport torch\n", "\nimport engine as torch\n", 1))
    return out


def _run(script: Path, *args: str, timeout: int = 240) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(script), *args], check=False, cwd=script.parent, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _accuracy(out: str, label: str = "") -> float:
    return float(re.search(rf"test accuracy{label}: ([0-9.]+)", out).group(1))


def test_digits_cnn_on_engine_and_weights_load_in_torch(tmp_path):
    weights = tmp_path / "digits_cnn.pt"
    out = _run(_on_engine("digits_cnn.py", tmp_path), "--epochs", "6", "--out", str(weights))
    assert _accuracy(out) >= 0.95, out
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    spec = importlib.util.spec_from_file_location("digits_cnn_torch", EXAMPLES / "digits_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # the unmodified script, on real torch
    model = mod.SimpleCNN()
    model.load_state_dict(load_file(str(weights)), strict=True)  # engine.save wrote safetensors
    _, test = mod.load_data()
    acc = mod.evaluate(model, torch.utils.data.DataLoader(test, batch_size=256))
    assert acc == pytest.approx(_accuracy(out), abs=1e-4)  # the same predictions in torch


def test_digits_cnn_runs_unchanged_on_torch(tmp_path, monkeypatch, capsys):
    """The script itself is plain PyTorch: one epoch of its main() on real torch (in-process)."""
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("digits_cnn_torch_main", EXAMPLES / "digits_cnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(sys, "argv", ["digits_cnn.py", "--epochs", "1", "--out", str(tmp_path / "t.pt")])
    mod.main()
    assert _accuracy(capsys.readouterr().out) > 0.3  # trained: chance is 0.1
    assert (tmp_path / "t.pt").stat().st_size > 0


def test_multitask_on_engine(tmp_path):
    out = _run(_on_engine("multitask_digits.py", tmp_path))
    assert _accuracy(out, " digit") >= 0.95, out
    assert _accuracy(out, " parity") >= 0.95, out


def test_client_example_trains_two_runs_and_downloads_the_better(stack, tmp_path):
    """The client example against the running service (the embedded default)."""
    out = tmp_path / "best.safetensors"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRAINYARD_URL=stack.base_url)
    proc = subprocess.run([sys.executable, str(EXAMPLES / "client_compare.py"), "--epochs", "3", "--out", str(out)],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scores = {float(lr): float(acc) for lr, acc in re.findall(r"lr=([0-9.]+): val_accuracy ([0-9.]+)", proc.stdout)}
    assert set(scores) == {0.01, 0.0005}
    best_lr = max(scores, key=scores.get)
    assert f"best: mlp lr={best_lr} " in proc.stdout and out.stat().st_size > 0
