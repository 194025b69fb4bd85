"""The classic PyTorch training script: SimpleCNN on scikit-learn's 8x8 digits.

Written for PyTorch; runs on Trainyard's engine by changing only the import line to
``import engine as torch`` (tests/examples does exactly that). The seed's SimpleCNN
(two 3x3 convolutions with 2x2 max-pooling, two linear layers) with the first linear
layer sized for 8x8 inputs (64 channels x 2 x 2 after two poolings).

Run: python examples/digits_cnn.py [--epochs 8] [--out digits_cnn.pt]
"""
import argparse
import os
import tempfile

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class SimpleCNN(torch.nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = torch.nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.pool = torch.nn.MaxPool2d(2)
        self.fc1 = torch.nn.Linear(64 * 2 * 2, 128)
        self.fc2 = torch.nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


def load_data():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # N x 1 x 8 x 8 in [0, 1]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    train = torch.utils.data.TensorDataset(torch.tensor(x_train), torch.tensor(y_train))
    test = torch.utils.data.TensorDataset(torch.tensor(x_test), torch.tensor(y_test))
    return train, test


def evaluate(model, loader):
    model.eval()
    correct, total = 0, 0
    with torch.no_grad():
        for x, y in loader:
            pred = model(x).argmax(dim=1)
            correct += (pred == y).sum().item()
            total += y.shape[0]
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "digits_cnn.pt"))
    args = parser.parse_args()

    torch.manual_seed(0)
    train, test = load_data()
    train_loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=256)

    model = SimpleCNN()
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    for epoch in range(args.epochs):
        model.train()
        running = 0.0
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            running += loss.item() * y.shape[0]
        print(f"epoch {epoch + 1}: loss {running / len(train):.4f}")

    torch.save(model.state_dict(), args.out)
    restored = SimpleCNN()
    restored.load_state_dict(torch.load(args.out))
    print(f"test accuracy: {evaluate(restored, test_loader):.4f}")


if __name__ == "__main__":
    main()
