#!/usr/bin/env python3
"""numpy's side of `bench-io`: time np.savez_compressed and np.load on the
same array the Swift benchmark wrote.

usage: npz_bench.py SWIFT_NPZ ENTRY WORKDIR [REPEAT]

Loads ENTRY from SWIFT_NPZ (untimed; this also checks that numpy reads our
file), then times savez_compressed of that array into WORKDIR and np.load
of the result (including access to the array, since np.load is lazy).
Prints human-readable lines and one machine-readable line (wall-clock and
process CPU seconds, best of REPEAT):
RESULT write_s=.. read_s=.. write_cpu_s=.. read_cpu_s=.. bytes=<file size> mib=<array MiB>
"""
import os
import sys
import time

import numpy as np


def main():
    src, entry, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    with np.load(src) as z:
        a = z[entry]
    mib = a.nbytes / 2**20
    out = os.path.join(workdir, "numpy_bench.npz")
    writes, reads, wcpu, rcpu = [], [], [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        np.savez_compressed(out, **{entry: a})
        writes.append(time.perf_counter() - t)
        wcpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        with np.load(out) as z:
            b = z[entry]
        reads.append(time.perf_counter() - t)
        rcpu.append(time.process_time() - c)
        if not np.array_equal(a, b):
            sys.exit("numpy round trip differs")
    size = os.path.getsize(out)
    os.remove(out)
    w, r, wc, rc = min(writes), min(reads), min(wcpu), min(rcpu)
    v = np.__version__
    print(f"numpy {v} savez_compressed: {w:7.3f} s {mib / w:8.1f} MB/s | cpu {wc:7.3f} s {mib / wc:8.1f} MB/s  ({size / a.nbytes:.3f} of raw size)")
    print(f"numpy {v} load:             {r:7.3f} s {mib / r:8.1f} MB/s | cpu {rc:7.3f} s {mib / rc:8.1f} MB/s")
    print(f"RESULT write_s={w:.6f} read_s={r:.6f} write_cpu_s={wc:.6f} read_cpu_s={rc:.6f} bytes={size} mib={mib:.3f}")


if __name__ == "__main__":
    main()
