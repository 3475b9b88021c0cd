#!/usr/bin/env python3
"""PyTorch's side of `bench-nn`: the same training steps in PyTorch eager on CPU.

usage: torch_bench.py THREADS BATCH STEPS

For the default teacher c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20 and student
c8,p,c16,p,c16,p,gap,fc5 (3x3 conv, padding 1, BN, ReLU; p = 2x2 max-pool;
gap = global average pool; fc = linear), on random 32x32x3 inputs and random
labels: one training step = forward, cross-entropy, backward, AdamW step;
inference = forward in eval mode under no_grad. Channels-last memory format
(PyTorch's fastest on CPU for these convolutions) and NCHW for the teacher.
Each step is timed alone; the best time is reported (least disturbed by other
processes), as bench-nn does. Prints one machine-readable line per model:
RESULT name=<model> train_img_s=.. infer_img_s=..
"""
import sys
import time

import torch
import torch.nn as nn


def make(arch, batch_norm):
    layers, c = [], 3
    for tok in arch.split(","):
        if tok.startswith("c"):
            n = int(tok[1:])
            layers.append(nn.Conv2d(c, n, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(n))
            layers.append(nn.ReLU(inplace=True))
            c = n
        elif tok == "p":
            layers.append(nn.MaxPool2d(2))
        elif tok == "gap":
            layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif tok.startswith("fc"):
            layers.append(nn.Linear(c, int(tok[2:])))
            c = int(tok[2:])
    return nn.Sequential(*layers), c


def bench(name, arch, batch_norm, channels_last, batch, steps):
    torch.manual_seed(1)
    model, classes = make(arch, batch_norm)
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, classes, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    model.train()
    for _ in range(3):
        step()
    train = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        train.append(time.perf_counter() - t)
    model.eval()
    infer = []
    with torch.no_grad():
        for _ in range(2):
            model(x)
        for _ in range(steps):
            t = time.perf_counter()
            model(x)
            infer.append(time.perf_counter() - t)
    tr, inf = batch / min(train), batch / min(infer)
    print(f"torch {name}: train {min(train) * 1e3:.1f} ms/step = {tr:.0f} img/s best, inference {inf:.0f} img/s best")
    print(f"RESULT name={name} train_img_s={tr:.3f} infer_img_s={inf:.3f}")


def main():
    threads, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {batch}, {steps} timed steps")
    teacher = "c32,c32,p,c64,c64,p,c128,c128,p,gap,fc20"
    student = "c8,p,c16,p,c16,p,gap,fc5"
    bench("teacher", teacher, True, True, batch, steps)
    bench("teacher-nchw", teacher, True, False, batch, steps)
    bench("student", student, True, True, batch, steps)
    bench("teacher-nobn", teacher, False, True, batch, steps)


if __name__ == "__main__":
    main()
