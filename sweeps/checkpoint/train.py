#!/usr/bin/env python3
"""The checkpoint protocol in its smallest form (standard library only).

A toy training loop (noisy gradient descent on x²/2) that saves its state to $KAPPA_TRIAL_DIR,
the trial's directory, which outlives its attempts. When it finds a checkpoint there it resumes
from it, and first re-emits the metric points it had reported before, so the attempt kappa
counts carries the whole curve from step 0. The checkpoint is written to a temporary file and
renamed over the old one, so an attempt killed mid-write leaves the previous checkpoint intact.
On SIGTERM (a draining worker: the allocation's time limit, an eviction) it saves a checkpoint
at once and exits with status 143 (128 + SIGTERM; 0 would mean "finished"); kappa records the
attempt as preempted, not failed. Each point says which step
the attempt resumed from (`resumed_from`, 0 for a fresh start).

    python3 sweeps/checkpoint/train.py --lr 0.1 --steps 200 --every 10 --sleep 0.01
"""
import argparse
import json
import os
import random
import signal
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per step (a run long enough to interrupt)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    ckpt = os.path.join(os.environ.get("KAPPA_TRIAL_DIR", "."), "checkpoint.json")

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    def save(x, step, curve, rng):
        tmp = ckpt + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"x": x, "step": step, "curve": curve, "rng": rng.getstate()}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, ckpt)

    rng = random.Random(a.seed)
    x, step, curve, resumed = 1.0, 0, [{"step": 0, "loss": 0.5}], 0
    if os.path.exists(ckpt):
        with open(ckpt) as f:
            state = json.load(f)
        x, step, curve = state["x"], state["step"], state["curve"]
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))
        resumed = step
    # Re-emit what the earlier attempts reported, up to the checkpoint.
    for point in curve:
        print(json.dumps(point), flush=True)

    while step < a.steps:
        x -= a.lr * (x + rng.gauss(0.0, 0.1))
        step += 1
        time.sleep(a.sleep)
        point = {"step": step, "loss": 0.5 * x * x, "resumed_from": resumed}
        curve.append(point)
        print(json.dumps(point), flush=True)
        if stop or step % a.every == 0 or step == a.steps:
            save(x, step, curve, rng)
        if stop:
            # Not 0: exit status 0 means "finished", and kappa would count this partial run.
            print(f"SIGTERM: checkpoint saved at step {step}", file=sys.stderr, flush=True)
            sys.exit(143)


if __name__ == "__main__":
    main()
