#!/usr/bin/env python3
"""Vectorised NumPy baseline for `kappa bench sim`: the same workloads as kappa-sim.

All paths at once as a (paths, d) array on the diagonal quadratic f(x) = 1/2 sum lambda_i x_i^2
(lambda evenly spaced in [0.1, 10]), Gaussian gradient noise of scale sigma, every path starting
at x0. Like kappa it computes the loss of every path at every step (the stationary average over
the steps after the burn-in half, and the divergence check) and records the mean loss every 1% of
the steps (with |grad f|^2, and for the sign-like optimizers the phase counts, as kappa does
there).

--optimizer sgd-sde (the default): SGD's SDE, dX = -lambda*X dt + sqrt(eta)*sigma dW,
Euler-Maruyama with dt = eta.

--optimizer NAME: the discrete optimizer NAME on the stochastic gradient g = lambda*x + sigma*z,
with the update rules of crates/sim/src/optim/*.rs (THEORY.md sections 2 and 8): bias-corrected
moments, eps outside the root, sign(0) = 0, decoupled weight decay x <- x - eta*theta*x with the
old x for the optimizers that read it (kappa passes --weight-decay 0 for the others).

Prints one JSON line: {"element_steps_per_s": ..., "seconds": ..., "stationary_loss": ...}.
"""
import argparse
import json
import math
import time

import numpy as np

OPTIMIZERS = ["sgd-sde", "sgd", "signsgd", "rmsprop", "rmspropw", "adam", "adamw", "momentum", "nesterov", "signum",
              "lion"]
SIGN_LIKE = {"signsgd", "signum", "lion"}


def sde_step(a, lam, x, z, rng):
    """SGD's SDE, Euler-Maruyama with dt = eta (the workload `kappa bench sim` always had)."""
    dt = a.lr
    noise = np.sqrt(a.lr) * a.sigma * np.sqrt(dt)

    def step():
        rng.standard_normal(out=z)
        x[...] += -lam * x * dt + noise * z

    return step


def optimizer_step(a, lam, x, z, rng):
    """One discrete step of `a.optimizer`, in place, with NumPy's ufuncs writing into buffers."""
    lr, b1, b2, eps, decay = a.lr, a.beta1, a.beta2, a.eps, a.lr * a.weight_decay
    g = np.empty_like(x)
    t = np.empty_like(x)
    m = np.zeros_like(x)
    v = np.zeros_like(x)
    pows = [1.0, 1.0]  # beta1^k, beta2^k

    def gradient():
        rng.standard_normal(out=z)
        np.multiply(x, lam, out=g)
        z[...] *= a.sigma
        g[...] += z

    def decayed(update):
        # x <- x - (update + eta*theta*x), update already scaled by eta.
        if decay != 0.0:
            np.multiply(x, decay, out=t)
            update += t
        x[...] -= update

    def sgd():
        gradient()
        g[...] *= lr
        x[...] -= g

    def signsgd():
        gradient()
        np.sign(g, out=g)
        g[...] *= lr
        x[...] -= g

    def adaptive(first_moment):
        def step():
            gradient()
            pows[1] *= b2
            corr2 = 1.0 / (1.0 - pows[1]) if a.bias_correction else 1.0
            if first_moment:
                pows[0] *= b1
                corr1 = 1.0 / (1.0 - pows[0]) if a.bias_correction else 1.0
                m[...] *= b1
                np.multiply(g, 1.0 - b1, out=t)
                m[...] += t
            # v <- b2 v + (1 - b2) g^2
            v[...] *= b2
            np.multiply(g, g, out=t)
            t[...] *= 1.0 - b2
            v[...] += t
            # denominator sqrt(v * corr2) + eps
            np.multiply(v, corr2, out=t)
            np.sqrt(t, out=t)
            t[...] += eps
            if first_moment:
                np.multiply(m, lr * corr1, out=g)
            else:
                g[...] *= lr
            g[...] /= t
            decayed(g)

        return step

    def momentum():
        gradient()
        m[...] *= b1
        m[...] += g
        np.multiply(m, lr, out=g)
        decayed(g)

    def nesterov():
        gradient()
        m[...] *= b1
        m[...] += g
        # eta (g + mu b)
        np.multiply(m, b1, out=t)
        g[...] += t
        g[...] *= lr
        decayed(g)

    def signum():
        gradient()
        m[...] *= b1
        g[...] *= 1.0 - b1
        m[...] += g
        np.sign(m, out=g)
        g[...] *= lr
        decayed(g)

    def lion():
        gradient()
        # c = b1 m + (1 - b1) g, with the old m
        np.multiply(m, b1, out=t)
        np.multiply(g, 1.0 - b1, out=z)
        t[...] += z
        np.sign(t, out=t)
        t[...] *= lr
        if decay != 0.0:
            np.multiply(x, decay, out=z)
            t[...] += z
        x[...] -= t
        # m <- b2 m + (1 - b2) g
        m[...] *= b2
        g[...] *= 1.0 - b2
        m[...] += g

    return {
        "sgd": sgd,
        "signsgd": signsgd,
        "rmsprop": adaptive(False),
        "rmspropw": adaptive(False),
        "adam": adaptive(True),
        "adamw": adaptive(True),
        "momentum": momentum,
        "nesterov": nesterov,
        "signum": signum,
        "lion": lion,
    }[a.optimizer]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd-sde")
    ap.add_argument("--paths", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--no-bias-correction", dest="bias_correction", action="store_false")
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--x0", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    rng = np.random.default_rng(a.seed)
    lam = np.linspace(0.1, 10.0, a.dim)
    x = np.full((a.paths, a.dim), a.x0)
    z = np.empty_like(x)
    if a.optimizer == "sgd-sde":
        step = sde_step(a, lam, x, z, rng)
    else:
        step = optimizer_step(a, lam, x, z, rng)
    sign_like = a.optimizer in SIGN_LIKE
    record_every = max(1, round(a.steps / 100))
    burn_in = a.steps // 2
    sums = np.zeros(a.paths)
    curve = []
    start = time.perf_counter()
    for k in range(1, a.steps + 1):
        step()
        loss = 0.5 * (lam * x * x).sum(axis=1)
        if not np.all(np.isfinite(loss) & (loss <= 1e150)):
            break
        if k > burn_in:
            sums += loss
        if k % record_every == 0 or k == a.steps:
            grad = np.abs(lam * x)
            point = {"loss": loss.mean(), "grad_sq": float((grad * grad).sum())}
            if sign_like:
                y = grad / (math.sqrt(2.0) * a.sigma)
                point["phases"] = [int((y > 1.5).sum()), int(((y >= 1.0) & (y <= 1.5)).sum()), int((y < 1.0).sum())]
            curve.append(point)
    seconds = time.perf_counter() - start
    stationary = float((sums / max(1, a.steps - burn_in)).mean())
    print(json.dumps({
        "element_steps_per_s": a.paths * a.dim * a.steps / seconds,
        "seconds": seconds,
        "stationary_loss": stationary,
    }))


if __name__ == "__main__":
    main()
