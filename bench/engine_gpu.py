"""Whole training steps on the GPU, engine (cupy) vs torch CUDA eager, fp32 and mixed precision.

    python bench/engine_gpu.py [--models resnet18,transformer,lstm] [--precisions 32,16-mixed]
                               [--warmup 5] [--iters 20] [--json out.json]

Workloads (forward, loss, backward, optimizer step; the same model code for both libraries,
since the engine speaks PyTorch):
- resnet18: CIFAR-style ResNet-18 (BasicBlocks 2-2-2-2, BatchNorm, stride-2 and 1x1 shortcut
  convs) on 3x32x32, batch 256, 10 classes, SGD momentum 0.9 with weight decay
- transformer: embedding (vocab 1000) + 2-layer TransformerEncoder d128, 4 heads, ff 512,
  batch_first, seq 64, batch 256, mean-pooled linear head, AdamW
- lstm: 1-layer LSTM, 32 inputs, hidden 256, seq 64, batch 256, batch_first, linear head
  on the last step, Adam

"16-mixed" is autocast(cuda, float16) around forward + loss and a GradScaler around backward
and step, on both sides. Each (model, precision, library) runs in its own subprocess, so
neither side's allocator, kernel caches or threads land on the other's clock; each step is
synchronized and timed alone, and the figures are the median with the 10th-90th percentile
spread over ``--iters`` steps after ``--warmup``. TF32 stays at each library's default (torch:
off for matmuls, on for cuDNN convolutions; engine: off, its convolutions are GEMMs). Without
a CUDA torch only the engine's figures are printed, and the output says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = ("resnet18", "transformer", "lstm")
PRECISIONS = ("32", "16-mixed")


# ----- the models, written once for both libraries ------------------------------------------
def _resnet18(lib):
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.relu = nn.ReLU()

        def forward(self, x):
            y = self.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return self.relu(y + (x if self.short is None else self.short(x)))

    class ResNet18(nn.Module):
        def __init__(self, classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
            layers, cin = [], 64
            for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
                layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
                cin = cout
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, classes)

        def forward(self, x):
            return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))

    return ResNet18()


def _transformer(lib):
    nn = lib.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(1000, 128)
            layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.1, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(128, 10)

        def forward(self, tokens):
            return self.head(self.enc(self.emb(tokens)).mean(1))

    return Classifier()


def _lstm(lib):
    nn = lib.nn

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(32, 256, batch_first=True)
            self.head = nn.Linear(256, 10)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    return Classifier()


def _workload(lib, name: str, rng: np.random.Generator, dev: str = "cuda", batch: int = 256):
    """(model, optimizer, inputs, targets) on ``dev``."""
    y = lib.tensor(rng.integers(0, 10, batch), device=dev)
    if name == "resnet18":
        model = _resnet18(lib).to(dev)
        opt = lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        x = lib.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device=dev)
    elif name == "transformer":
        model = _transformer(lib).to(dev)
        opt = lib.optim.AdamW(model.parameters(), lr=1e-3)
        x = lib.tensor(rng.integers(0, 1000, (batch, 64)), device=dev)
    else:
        model = _lstm(lib).to(dev)
        opt = lib.optim.Adam(model.parameters(), lr=1e-3)
        x = lib.tensor(rng.standard_normal((batch, 64, 32)).astype(np.float32), device=dev)
    model.train()
    return model, opt, x, y


# ----- one side, in its own process --------------------------------------------------------
def _side(lib_name: str, model_name: str, precision: str, warmup: int, iters: int, dev: str = "cuda",
          batch: int = 256) -> dict:
    if lib_name == "engine":
        sys.path.insert(0, os.path.join(HERE, ".."))
        import engine as lib

        autocast = lib.autocast
        scaler = lib.amp.GradScaler(dev, enabled=precision == "16-mixed")
        info = {"engine_allow_tf32": lib.backends.cuda.matmul.allow_tf32}
    else:
        import torch as lib

        autocast = lib.autocast
        scaler = lib.amp.GradScaler(dev, enabled=precision == "16-mixed")
        info = {"torch": lib.__version__, "matmul_allow_tf32": lib.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": lib.backends.cudnn.allow_tf32}
    lib.manual_seed(0)
    model, opt, x, y = _workload(lib, model_name, np.random.default_rng(0), dev, batch)
    ce = lib.nn.functional.cross_entropy
    mixed = precision == "16-mixed"

    def step():
        opt.zero_grad()
        with autocast(dev, dtype=lib.float16, enabled=mixed):
            loss = ce(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    def sync():
        if dev == "cuda":
            lib.cuda.synchronize()

    times, losses = [], []
    for i in range(warmup + iters):
        sync()
        t0 = time.perf_counter()
        loss = step()
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            losses.append(float(loss.item()))
    if dev == "cuda" and lib_name == "engine":
        import cupy

        info["pool_bytes"] = int(cupy.get_default_memory_pool().total_bytes())
    elif dev == "cuda":
        info["max_allocated_bytes"] = int(lib.cuda.max_memory_allocated())
    return {"times_s": times, "losses": losses, "scale": scaler.get_scale(), **info}


def _summary(times: list[float]) -> dict:
    q = np.percentile(times, [10, 50, 90])
    return {"median_ms": q[1] * 1e3, "p10_ms": q[0] * 1e3, "p90_ms": q[2] * 1e3,
            "mean_ms": statistics.fmean(times) * 1e3}


def _fmt(s: dict | None) -> str:
    return f"{s['median_ms']:8.2f} ms [{s['p10_ms']:.2f}-{s['p90_ms']:.2f}]" if s else "     n/a"


def _spawn(lib_name: str, model: str, precision: str, args) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--side", lib_name, "--models", model,
           "--precisions", precision, "--warmup", str(args.warmup), "--iters", str(args.iters),
           "--device", args.device, "--batch", str(args.batch)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"  {lib_name} {model} {precision}: over --timeout {args.timeout} s", flush=True)
        return None
    if r.returncode != 0:
        print(f"  {lib_name} {model} {precision}: failed (rc {r.returncode})\n{r.stderr[-2000:]}", flush=True)
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _machine() -> dict:
    out = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
           "load": os.getloadavg()}
    try:
        import cupy

        out["cupy"] = cupy.__version__
        out["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception as exc:  # pragma: no cover - reported, not fatal
        out["cupy"] = f"unavailable: {exc}"
    return out


def _torch_cuda() -> bool:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--precisions", default=",".join(PRECISIONS))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--timeout", type=int, default=240, help="seconds per side")
    ap.add_argument("--json")
    ap.add_argument("--device", default="cuda", help="cpu only to check this script without a GPU")
    ap.add_argument("--batch", type=int, default=256, help="256 is the benchmark; smaller for a dry run")
    ap.add_argument("--side", choices=("engine", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    models, precisions = args.models.split(","), args.precisions.split(",")
    if args.side:
        print(json.dumps(_side(args.side, models[0], precisions[0], args.warmup, args.iters, args.device,
                               args.batch)))
        return
    machine = _machine()
    with_torch = _torch_cuda() if args.device == "cuda" else True
    print("machine:", json.dumps(machine), flush=True)
    if not with_torch:
        print("torch with CUDA is not available here: engine figures only", flush=True)
    rows = []
    for model in models:
        for precision in precisions:
            e = _spawn("engine", model, precision, args)
            t = _spawn("torch", model, precision, args) if with_torch else None
            row = {"model": model, "precision": precision, "engine": e, "torch": t}
            es = _summary(e["times_s"]) if e else None
            ts = _summary(t["times_s"]) if t else None
            row["engine_summary"], row["torch_summary"] = es, ts
            ratio = es["median_ms"] / ts["median_ms"] if es and ts else None
            row["ratio"] = ratio
            rows.append(row)
            tail = f"  ratio {ratio:.2f}x" if ratio else ""
            print(f"{model:12s} {precision:9s} engine {_fmt(es)}  torch {_fmt(ts)}{tail}", flush=True)
            if e and t and args.device == "cuda":
                print(f"{'':22s} loss engine {np.mean(e['losses']):.4f} torch {np.mean(t['losses']):.4f}; "
                      f"memory engine pool {e['pool_bytes'] / 2**20:.0f} MiB, torch max allocated "
                      f"{t['max_allocated_bytes'] / 2**20:.0f} MiB", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "torch_cuda": with_torch, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
