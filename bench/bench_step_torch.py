#!/usr/bin/env python3
"""PyTorch's side of `cargo run --release --example bench_step`: the same models, batch, data
shape and optimizer, dense and masked as `torch.nn.utils.prune` does it (l1_unstructured per
layer at the sparsity, every conv and linear weight: sprsc's `distribution uniform`, `mask
magnitude`, `update hard`).

Run from a venv with torch (never a dependency of sprsc):
    python3 bench/bench_step_torch.py [MODEL...]
Prints `step model=<name> sparsity=<s> threads=<t> ms=<median ms per step>` per cell, like the
Rust example; `bench/step.sh` runs both and prints the ratios.
"""
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import prune

BATCH = 128


class LeNet300(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class LeNet5Caffe(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 20, 5), nn.Conv2d(20, 50, 5)
        self.fc1, self.fc2 = nn.Linear(800, 500), nn.Linear(500, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet20(nn.Module):
    """He et al.'s CIFAR ResNet-20 with 1x1 conv + BN shortcuts, as sprsc's zoo builds it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
        layers, cin = [], 16
        for s, w in enumerate([16, 32, 64]):
            for i in range(3):
                layers.append(Block(cin, w, 2 if s > 0 and i == 0 else 1))
                cin = w
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


MODELS = {
    "lenet300_100": (LeNet300, (1, 28, 28), [0.0, 0.9, 0.98, 0.99, 0.999], 60),
    "lenet5_caffe": (LeNet5Caffe, (1, 28, 28), [0.0, 0.9, 0.98, 0.99, 0.999], 25),
    "resnet20": (ResNet20, (3, 32, 32), [0.0, 0.9, 0.99], 8),
}


def step_ms(make, shape, sparsity, threads, steps):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = make()
    if sparsity > 0:
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                prune.l1_unstructured(m, "weight", amount=sparsity)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    batches = [(torch.rand(BATCH, *shape) * 2 - 1, torch.arange(BATCH) % 10) for _ in range(16)]
    model.train()
    times = []
    for i in range(steps + 3):
        x, y = batches[i % len(batches)]
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if i >= 3:  # warm-up
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    chosen = sys.argv[1:] or list(MODELS)
    only = os.environ.get("BENCH_SPARSITY")
    for name in chosen:
        make, shape, sparsities, steps = MODELS[name]
        steps = int(os.environ.get("BENCH_STEPS", steps))
        for s in sparsities:
            if only is not None and float(only) != s:
                continue
            for threads in (1, 2):
                ms = step_ms(make, shape, s, threads, steps)
                print(f"step model={name} sparsity={s:g} threads={threads} ms={ms:.3f}", flush=True)


if __name__ == "__main__":
    main()
