#!/usr/bin/env python3
"""How fast the corner digit is learnt: a label-only student trained with the
digit as its label (numpy; release tools in .build/release).

    python3 scripts/digit-as-label.py --teacher artifacts/quick/teacher/teacher.npz --out /tmp/dal [--digits mnist:data/mnist]

Images of the gratings subtask that all carry the patch, relabelled by their
digit (5 classes; the digit is independent of the grating's class), train
`distill --method label-only --epochs 40 --seed 1` (default student); the
script prints the validation curve and the first epoch at which validation
accuracy reaches 90 % (the teacher is required by `distill` but unused by
label-only). Two protocols:

  readme    (the README's glyph measurement) test-conflict of synthesis
            seeds 1 and 2 pooled, shuffled (numpy seed 0): 1200 train,
            300 validation. With MNIST digits the two seeds' test pools
            overlap, so validation digits may have been seen in training.
  disjoint  train: distill-train-decorrelated at rho = 1, seed 1 (1200
            images, digits from the training pool); validation: 300 of
            test-conflict, seed 1 (digits from the disjoint test pool). A
            student must read unseen handwritten digits to pass.

Everything else (contrast, digit source) is passed to synthesize as given.
"""

import argparse
import os
import subprocess
import sys

import numpy as np

BIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".build", "release")


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"digit-as-label: failed: {' '.join(cmd)}\n{r.stdout[-2000:]}")
    return r.stdout


def synth(out, seed, splits, extra):
    run([os.path.join(BIN, "synthesize"), "--out", out, "--family", "gratings", "--rho", "1", "--seed", str(seed),
         "--splits", splits, "--no-contact-sheets", "--quiet", "--fixed-time"] + extra)


def load(path):
    z = np.load(path)
    assert z["artifact"].all(), path
    return z["images"], z["digit"].astype(np.int32)


def save(path, images, digits):
    n = len(digits)
    np.savez(path, images=images, labels=digits, artifact=np.ones(n, dtype=bool), digit=digits,
             group=(digits * 2 + 1).astype(np.int32))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, help="any teacher artifact (unused by label-only)")
    ap.add_argument("--out", required=True, help="work folder")
    ap.add_argument("--protocol", choices=["readme", "disjoint"], default="readme")
    ap.add_argument("--digits", default="glyph", help="synthesize --digits (glyph or mnist:PATH)")
    ap.add_argument("--grating-contrast", default="0.3,0.6")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1, help="student seed")
    args = ap.parse_args()
    extra = ["--digits", args.digits, "--grating-contrast", args.grating_contrast]
    os.makedirs(args.out, exist_ok=True)
    if args.protocol == "readme":
        parts = []
        for s in (1, 2):
            synth(os.path.join(args.out, f"seed{s}"), s, "test-conflict", extra)
            parts.append(load(os.path.join(args.out, f"seed{s}", "test-conflict.npz")))
        images = np.concatenate([p[0] for p in parts])
        digits = np.concatenate([p[1] for p in parts])
        order = np.random.RandomState(0).permutation(len(digits))
        train, val = order[:1200], order[1200:1500]
        save(os.path.join(args.out, "train.npz"), images[train], digits[train])
        save(os.path.join(args.out, "val.npz"), images[val], digits[val])
    else:
        synth(os.path.join(args.out, "seed1"), 1, "distill-train-decorrelated,test-conflict", extra)
        ti, td = load(os.path.join(args.out, "seed1", "distill-train-decorrelated.npz"))
        vi, vd = load(os.path.join(args.out, "seed1", "test-conflict.npz"))
        order = np.random.RandomState(0).permutation(len(vd))[:300]
        save(os.path.join(args.out, "train.npz"), ti, td)
        save(os.path.join(args.out, "val.npz"), vi[order], vd[order])
        if args.digits.startswith("mnist:"):
            a = set(np.load(os.path.join(args.out, "seed1", "distill-train-decorrelated.npz"))["digit_image"])
            b = set(np.load(os.path.join(args.out, "seed1", "test-conflict.npz"))["digit_image"][order])
            assert not (a & b), "train and validation share MNIST images"
    student = os.path.join(args.out, "student.npz")
    if os.path.exists(student):
        os.remove(student)
    run([os.path.join(BIN, "distill"), "--teacher", args.teacher, "--train", os.path.join(args.out, "train.npz"),
         "--val", os.path.join(args.out, "val.npz"), "--out", student, "--method", "label-only",
         "--epochs", str(args.epochs), "--seed", str(args.seed)])
    curve = np.load(student)["log/val_accuracy"]
    first = next((i + 1 for i, a in enumerate(curve) if a >= 0.9), None)
    print("validation accuracy by epoch: " + " ".join(f"{a * 100:.1f}" for a in curve))
    print(f"digits {args.digits}, contrast {args.grating_contrast}, protocol {args.protocol}: "
          f"90 % validation first at epoch {first if first else 'never'} of {len(curve)}; best {curve.max() * 100:.1f} %")


if __name__ == "__main__":
    main()
