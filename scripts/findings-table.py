#!/usr/bin/env python3
"""Compact findings table from a report's results.csv (docs/findings.md).

    python3 scripts/findings-table.py artifacts/paper/report/results.csv \
        --subtask gratings --rhos 0 1 [--split acc_test] [--split acc_conflict]

One row per method (series as the report names them: `<method>` is the
published-defaults arm, `<method>-tuned` the tuned arm), one column per
(split, rho): mean over seeds and the half-width of the 95 % Student-t
interval, in %. The same numbers as the report's tables, fewer columns.
"""
import argparse
import csv
import math
import statistics
from collections import defaultdict

# Two-sided 95 % Student-t quantiles t_{0.975, df}.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}


def t975(df):
    if df in T975:
        return T975[df]
    return T975[max(k for k in T975 if k <= df)] if df < 30 else 1.96


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--subtask", required=True)
    ap.add_argument("--rhos", nargs="+", type=float, required=True)
    ap.add_argument("--split", action="append", help="column(s) of results.csv, default acc_test and acc_conflict")
    ap.add_argument("--methods", nargs="*", help="methods in this order (default: order of first appearance)")
    a = ap.parse_args()
    splits = a.split or ["acc_test", "acc_conflict"]
    values = defaultdict(list)
    order = []
    with open(a.csv) as f:
        for r in csv.DictReader(f):
            if r["subtask"] != a.subtask:
                continue
            m = r["method"]
            if m not in order:
                order.append(m)
            for s in splits:
                if r.get(s):
                    values[(m, s, float(r["rho"]))].append(100 * float(r[s]))
    methods = a.methods or order
    cols = [(s, rho) for rho in a.rhos for s in splits]
    name = {"acc_test": "test", "acc_conflict": "conflict", "acc_clean": "clean",
            "worst_group": "worst group", "worst_class": "worst class"}
    print("| method | " + " | ".join(f"{name.get(s, s)} ρ = {rho:g}" for s, rho in cols) + " |")
    print("|---|" + "---:|" * len(cols))
    for m in methods:
        cells = []
        for s, rho in cols:
            v = values.get((m, s, rho), [])
            if not v:
                cells.append("–")
            elif len(v) == 1:
                cells.append(f"{v[0]:.1f} (n = 1)")
            else:
                h = t975(len(v) - 1) * statistics.stdev(v) / math.sqrt(len(v))
                cells.append(f"{statistics.mean(v):.1f} ± {h:.1f}")
        print(f"| `{m}` | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
