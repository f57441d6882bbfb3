#!/usr/bin/env python3
"""An independent NumPy implementation of THEORY.md §8's optimizers (momentum, nesterov, signum,
lion) on a quadratic with a full Hessian, for crates/sim/tests/independent.rs: it reads one JSON
object (H, sigma, x0, optimizer settings, paths, steps, record steps) on stdin and prints, as JSON,
the mean loss and its standard error over paths at each record step, and the mean over paths of
each path's time-averaged loss after the burn-in with its SE. Nothing here comes from kappa but
the Hessian itself (so both run the same landscape); random numbers are NumPy's own.
"""
import json
import sys

import numpy as np


def main():
    c = json.load(sys.stdin)
    h = np.array(c["hessian"], dtype=np.float64)
    sigma = np.array(c["sigma"], dtype=np.float64) / np.sqrt(c["batch_size"])
    paths, steps, d = c["paths"], c["steps"], h.shape[0]
    lr, b1, b2, wd = c["lr"], c["beta1"], c["beta2"], c["weight_decay"]
    opt = c["optimizer"]
    rng = np.random.default_rng(c["seed"])
    x = np.full((paths, d), c["x0"], dtype=np.float64)
    m = np.zeros_like(x)
    loss = lambda x: 0.5 * np.einsum("pi,ij,pj->p", x, h, x)
    records = set(c["record_steps"])
    curve = {}
    window = np.zeros(paths)
    counted = 0
    if 0 in records:
        curve[0] = loss(x)
    for k in range(1, steps + 1):
        g = x @ h + sigma * rng.standard_normal((paths, d))
        if opt == "momentum":
            m = b1 * m + g
            x = x - lr * m - lr * wd * x
        elif opt == "nesterov":
            m = b1 * m + g
            x = x - lr * (g + b1 * m) - lr * wd * x
        elif opt == "signum":
            m = b1 * m + (1 - b1) * g
            x = x - lr * np.sign(m) - lr * wd * x
        elif opt == "lion":
            u = b1 * m + (1 - b1) * g
            x = x - lr * (np.sign(u) + wd * x)
            m = b2 * m + (1 - b2) * g
        else:
            raise SystemExit(f"unknown optimizer {opt}")
        f = loss(x)
        if k in records:
            curve[k] = f
        if k > c["burn_in_steps"]:
            window += f
            counted += 1
    se = lambda v: float(np.std(v, ddof=1) / np.sqrt(len(v)))
    out = {
        "curve": [[k, float(np.mean(v)), se(v)] for k, v in sorted(curve.items())],
        "stationary": [float(np.mean(window / counted)), se(window / counted)],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
