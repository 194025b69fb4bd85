"""Train two runs from Python, compare them, and download the better one.

    bash scripts/serve.sh            # in another shell: the service on http://127.0.0.1:8000
    python examples/client_compare.py [--epochs 5] [--out best.safetensors]

The model is built with engine.nn and sent as a spec (engine.spec.to_spec).
"""
from __future__ import annotations

import argparse

from engine import nn
from trainyard.client import Client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", default="best.safetensors")
    args = parser.parse_args()

    with Client() as client:  # TRAINYARD_URL / TRAINYARD_API_KEY
        digits = client.datasets.builtin("digits")
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
        runs = {lr: client.jobs.submit(model=model, dataset=digits, name=f"mlp lr={lr}",
                                       training={"epochs": args.epochs, "batch_size": 32, "seed": 0,
                                                 "optimizer": {"type": "Adam", "lr": lr}})
                for lr in (0.01, 0.0005)}
        for job in runs.values():
            job.wait(progress=True, raise_on_failure=True)
        for lr, job in runs.items():
            print(f"lr={lr}: val_accuracy {job.final_metrics['val_accuracy']:.4f} "
                  f"val_loss {job.final_metrics['val_loss']:.4f}")
        best = max(runs.values(), key=lambda j: j.final_metrics["val_accuracy"])
        path = best.download(args.out)
        print(f"best: {best.name} ({best.id}) -> {path}")


if __name__ == "__main__":
    main()
