#!/usr/bin/env python3
"""A PyTorch-trained LeNet-300-100 as a warm start for sprsc (`init { from "..." }`).

Trains LeNet-300-100 in PyTorch for one epoch on MNIST (the IDX files of $SPRS_DATA/mnist,
normalised as sprsc does: (x/255 - 0.1307) / 0.3081), saves its `state_dict` with
`safetensors.torch.save_file`, then has sprsc evaluate the same weights without a training step
(`sprsc run --max-steps 0`) and prints both test accuracies, which agree (up to float summation
order).

Needs torch, safetensors and numpy (not a dependency of sprsc or of `cargo test`):
    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch safetensors numpy
    SPRS_DATA=/work/shared/data /tmp/torchvenv/bin/python bench/pytorch_lenet300.py
"""

import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def split(d, prefix):
    x = idx(os.path.join(d, f"{prefix}-images-idx3-ubyte.gz")).astype(np.float32)
    y = idx(os.path.join(d, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64)
    x = (x / 255.0 - 0.1307) / 0.3081
    return torch.from_numpy(x.reshape(len(x), -1)), torch.from_numpy(y)


class LeNet300(nn.Module):
    """sprsc's `lenet300_100`: the names of its params are these attributes' `state_dict` names."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def main():
    data = os.path.join(os.environ.get("SPRS_DATA", "data"), "mnist")
    (xtr, ytr), (xte, yte) = split(data, "train"), split(data, "t10k")
    torch.manual_seed(0)
    model = LeNet300()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for idx_batch in torch.randperm(len(xtr)).split(128):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xtr[idx_batch]), ytr[idx_batch]).backward()
        opt.step()
    with torch.no_grad():
        torch_acc = (model(xte).argmax(1) == yte).float().mean().item()
    out = tempfile.mkdtemp(prefix="sprsc-pytorch-")
    weights = os.path.join(out, "lenet300_pytorch.safetensors")
    save_file(model.state_dict(), weights)
    recipe = os.path.join(out, "warm.sprs")
    with open(recipe, "w") as f:
        f.write(
            "// LeNet-300-100 started from PyTorch-trained weights, evaluated without training.\n"
            "recipe warm {\n  data mnist(val: 0)\n  model lenet300_100\n"
            f"  init {{ from {json.dumps(weights)} }}\n"
            "  train { epochs 1; batch 128; optimizer sgd(lr: 0.1) }\n  output { plots false }\n}\n"
        )
    sprsc = os.environ.get("SPRSC", os.path.join(ROOT, "target", "debug", "sprsc"))
    run = subprocess.run(
        [sprsc, "run", recipe, "--max-steps", "0", "--out", os.path.join(out, "run"), "--format", "json"],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        sys.exit(f"sprsc failed:\n{run.stdout}{run.stderr}")
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    print(f"state_dict keys: {list(model.state_dict().keys())}")
    print(f"PyTorch test accuracy {100 * torch_acc:.2f}%, sprsc at step 0 {100 * summary['test_accuracy']:.2f}%")


if __name__ == "__main__":
    main()
