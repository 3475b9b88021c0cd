"""Shared by the scripts/longtail-*.sh measurements: a cell of student
metrics.json files as 'worst class / overall' test accuracy in %, mean ±
95 % Student-t half-width over the files (seeds), and the worst class per
seed."""
import json
import math

# two-sided 95 % t quantiles by degrees of freedom
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def stat(xs):
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return f"{100 * m:.1f}"
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))
    return f"{100 * m:.1f} ± {100 * T95.get(len(xs) - 1, 1.96) * sd / math.sqrt(len(xs)):.1f}"


def students(paths):
    return [json.load(open(p))["student"] for p in paths]


def cell(paths):
    ms = students(paths)
    w = [m["worst_class"] for m in ms]
    return f"{stat(w)} / {stat([m['acc_test'] for m in ms])} ({' '.join(f'{100 * x:.0f}' for x in w)})"
