"""Multi-task training in plain PyTorch: one trunk, two heads, one backward.

The trunk reads an 8x8 digit; the ``digit`` head classifies it (10 classes) and the
``parity`` head says whether it is odd. The two cross-entropy losses are weighted and
summed before a single ``backward()``, so the trunk learns from both. Written for
PyTorch; runs on Trainyard's engine with ``import engine as torch``.

Run: python examples/multitask_digits.py [--epochs 15]
"""
import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, kernel_size=3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 64), torch.nn.ReLU())
        self.digit = torch.nn.Linear(64, 10)
        self.parity = torch.nn.Linear(64, 2)

    def forward(self, x):
        h = self.trunk(x)
        return {"digit": self.digit(h), "parity": self.parity(h)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--parity-weight", type=float, default=0.5)
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    train = torch.utils.data.TensorDataset(torch.tensor(x_tr), torch.tensor(y_tr), torch.tensor(y_tr % 2))
    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)

    model = TwoHeads()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    weights = {"digit": 1.0, "parity": args.parity_weight}

    for epoch in range(args.epochs):
        model.train()
        total = 0.0
        for xb, digit, parity in loader:
            out = model(xb)
            loss = weights["digit"] * criterion(out["digit"], digit) + weights["parity"] * criterion(
                out["parity"], parity)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * xb.shape[0]
        print(f"epoch {epoch + 1}: weighted loss {total / len(train):.4f}")

    model.eval()
    with torch.no_grad():
        out = model(torch.tensor(x_te))
        digit_acc = (out["digit"].argmax(dim=1) == torch.tensor(y_te)).float().mean().item()
        parity_acc = (out["parity"].argmax(dim=1) == torch.tensor(y_te % 2)).float().mean().item()
    print(f"test accuracy digit: {digit_acc:.4f}")
    print(f"test accuracy parity: {parity_acc:.4f}")


if __name__ == "__main__":
    main()
