#!/usr/bin/env python3
"""Optuna baseline for `kappa bench dispatch`: N trivial trials with durable SQLite storage.

Prints one JSON line: {"trials": N, "seconds": s, "trials_per_s": r}.
"""
import argparse
import json
import os
import tempfile
import time

import optuna


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=100_000)
    a = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    d = tempfile.mkdtemp(prefix="optuna-bench-")
    storage = f"sqlite:///{os.path.join(d, 'optuna.db')}"
    study = optuna.create_study(storage=storage, study_name="noop", sampler=optuna.samplers.RandomSampler(seed=0))
    start = time.perf_counter()
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True), n_trials=a.trials)
    seconds = time.perf_counter() - start
    print(json.dumps({"trials": a.trials, "seconds": seconds, "trials_per_s": a.trials / seconds}))


if __name__ == "__main__":
    main()
