#!/usr/bin/env python3
"""NumPy baseline for `kappa bench train`: the same MLP training loop as kappa-train.

A 64-128-10 ReLU MLP (He-initialised hidden layer, Xavier output layer, zero biases) on the 8x8
digits shipped with kappa (crates/train/data/digits.csv, pixels scaled to [0, 1], 80/20 split),
softmax cross-entropy averaged over the batch, minibatches of B drawn without replacement and
reshuffled every epoch (the last partial batch dropped), updated by Adam (bias-corrected) or
plain SGD, all in float64, written the way one writes it in NumPy (vectorised over the batch).
Like kappa's benchmark it times `--steps` steps after 10 untimed warm-up steps and evaluates
only at the end. Prints one JSON line:
{"samples_per_s": ..., "seconds": ..., "train_loss": ..., "test_accuracy": ...}.
"""
import argparse
import json
import os
import time

import numpy as np


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_data = os.path.join(here, "..", "..", "crates", "train", "data", "digits.csv")
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=default_data)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    table = np.loadtxt(a.data, delimiter=",")
    x_all, y_all = table[:, :-1] / 16.0, table[:, -1].astype(np.int64)
    rng = np.random.default_rng(a.seed)
    order = rng.permutation(len(x_all))
    n_test = round(0.2 * len(x_all))
    test, train = order[:n_test], order[n_test:]
    x, y = np.ascontiguousarray(x_all[train]), y_all[train]
    xt, yt = x_all[test], y_all[test]
    n, d_in = x.shape
    h, k, b = a.hidden, 10, a.batch

    params = [
        rng.standard_normal((d_in, h)) * np.sqrt(2.0 / d_in),
        np.zeros(h),
        rng.standard_normal((h, k)) * np.sqrt(2.0 / (h + k)),
        np.zeros(k),
    ]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    state = {"t": 0, "perm": rng.permutation(n), "cursor": 0}

    def forward(xb, w1, b1, w2, b2):
        hidden = np.maximum(xb @ w1 + b1, 0.0)
        logits = hidden @ w2 + b2
        return hidden, logits

    def loss_acc(xs, ys):
        _, logits = forward(xs, *params)
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(ys)), ys].mean()), float((logits.argmax(axis=1) == ys).mean())

    def step():
        if state["cursor"] + b > n:
            state["perm"] = rng.permutation(n)
            state["cursor"] = 0
        idx = state["perm"][state["cursor"]:state["cursor"] + b]
        state["cursor"] += b
        xb, yb = x[idx], y[idx]
        w1, b1, w2, b2 = params
        hidden, logits = forward(xb, w1, b1, w2, b2)
        z = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(b), yb] -= 1.0
        dlogits = p / b
        dh = (dlogits @ w2.T) * (hidden > 0)
        grads = [xb.T @ dh, dh.sum(axis=0), hidden.T @ dlogits, dlogits.sum(axis=0)]
        if a.optimizer == "sgd":
            for param, g in zip(params, grads):
                param -= a.lr * g
        else:
            state["t"] += 1
            t = state["t"]
            c1, c2 = 1.0 / (1.0 - beta1 ** t), 1.0 / (1.0 - beta2 ** t)
            for param, g, mi, vi in zip(params, grads, m, v):
                mi *= beta1
                mi += (1.0 - beta1) * g
                vi *= beta2
                vi += (1.0 - beta2) * g * g
                param -= a.lr * (mi * c1) / (np.sqrt(vi * c2) + eps)

    for _ in range(10):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = time.perf_counter() - start
    train_loss, _ = loss_acc(x, y)
    _, test_acc = loss_acc(xt, yt)
    print(json.dumps({
        "samples_per_s": a.steps * b / seconds,
        "seconds": seconds,
        "train_loss": train_loss,
        "test_accuracy": test_acc,
    }))


if __name__ == "__main__":
    main()
