#!/usr/bin/env python3
"""Vectorised NumPy baseline for `kappa bench sim`: the same Euler-Maruyama workload as kappa-sim.

SGD SDE on a diagonal quadratic: dX = -lambda*X dt + sqrt(eta)*sigma dW, Euler-Maruyama with
dt = eta, all paths at once as a (paths, d) array. Like kappa it computes the loss of every path
at every step (for the stationary average and divergence check) and records the mean loss
every 1% of the steps. Prints one JSON line: {"element_steps_per_s": ..., "seconds": ...}.
"""
import argparse
import json
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--x0", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    lam = np.linspace(0.1, 10.0, a.dim)
    x = np.full((a.paths, a.dim), a.x0)
    dt = a.lr
    noise = np.sqrt(a.lr) * a.sigma * np.sqrt(dt)
    record_every = max(1, round(a.steps / 100))
    burn_in = a.steps // 2
    sums = np.zeros(a.paths)
    curve = []
    z = np.empty_like(x)
    start = time.perf_counter()
    for step in range(1, a.steps + 1):
        rng.standard_normal(out=z)
        x += -lam * x * dt + noise * z
        loss = 0.5 * (lam * x * x).sum(axis=1)
        if not np.all(np.isfinite(loss)):
            break
        if step > burn_in:
            sums += loss
        if step % record_every == 0:
            curve.append(loss.mean())
    seconds = time.perf_counter() - start
    stationary = float((sums / max(1, a.steps - burn_in)).mean())
    print(json.dumps({
        "element_steps_per_s": a.paths * a.dim * a.steps / seconds,
        "seconds": seconds,
        "stationary_loss": stationary,
    }))


if __name__ == "__main__":
    main()
