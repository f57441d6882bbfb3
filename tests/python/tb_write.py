#!/usr/bin/env python3
"""Writes TensorBoard event files with the real libraries, for the tests of kappa's event reader.

    python3 tests/python/tb_write.py --writer {tensorboardx,torch,torch-tensor} --dir DIR [--steps N]

It writes into DIR (which must hold no event file yet) and prints one JSON object on stdout saying
exactly what went in, so that a test can compare it with what the reader gets back:

    {"writer": "torch", "files": ["DIR/events.out.tfevents.<time>.<host>.<pid>.0", ...],
     "scalars": [{"run": ".", "tag": "train/loss", "step": 0, "value": 2.5}, ...]}

`run` is the event file's directory relative to DIR, "." for DIR itself (TensorBoard's names).
The writers:
  tensorboardx  tensorboardX.SummaryWriter, add_scalar: Summary.Value.simple_value (a float32)
  torch         torch.utils.tensorboard.SummaryWriter, add_scalar: simple_value too
  torch-tensor  torch's add_scalar(new_style=True): a rank-0 TensorProto with float_val (DT_FLOAT),
                and with double_precision=True (the tag train/loss_f64): double_val (DT_DOUBLE)
Scalars: N steps of train/loss (multiples of 1/1024, exact in float32) and lr (not exact in float32:
the JSON gives the float32-rounded value, as the file holds it), test/accuracy every 10 steps, and
a second run in DIR/run2 with the tag extra/metric. A histogram and a text summary go into DIR's
run too: values the reader must skip. Values are listed as written: float32-rounded ones as the
Python float of that float32, so the JSON's decimal is exactly the file's number.
"""
import argparse
import glob
import json
import math
import os
import sys

import numpy as np


def f32(x):
    """x as the float32 the file will hold, back as a Python float (exact)."""
    return float(np.float32(x))


def make_writer(kind, logdir):
    if kind == "tensorboardx":
        import tensorboardX
        return tensorboardX.SummaryWriter(logdir)
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
    return SummaryWriter(logdir)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--writer", required=True, choices=["tensorboardx", "torch", "torch-tensor"])
    p.add_argument("--dir", required=True)
    p.add_argument("--steps", type=int, default=50)
    a = p.parse_args()
    logdir = os.path.abspath(a.dir)
    pattern = os.path.join(logdir, "**", "events.out.tfevents.*")
    if glob.glob(pattern, recursive=True):
        sys.exit(f"{logdir} already holds event files")

    tensor = a.writer == "torch-tensor"
    scalars = []

    def add(writer, run, tag, step, value, double=False):
        """One scalar, written and recorded; float32-rounded unless it goes in as a double."""
        if tensor:
            writer.add_scalar(tag, value, step, new_style=True, double_precision=double)
        else:
            writer.add_scalar(tag, value, step)
        scalars.append({"run": run, "tag": tag, "step": step, "value": value if double else f32(value)})

    w = make_writer(a.writer, logdir)
    for step in range(a.steps):
        # A decaying loss with a deterministic wiggle, rounded to a multiple of 1/1024.
        loss = round((2.5 * math.exp(-step / 20) + 0.05 * math.sin(step)) * 1024) / 1024
        add(w, ".", "train/loss", step, loss)
        add(w, ".", "lr", step, 0.1 * 0.95 ** step)  # 0.1 is not a float32: rounded
        if tensor:
            add(w, ".", "train/loss_f64", step, loss + 1 / 3, double=True)  # not a float32
        if step % 10 == 0:
            add(w, ".", "test/accuracy", step, round((0.5 + step / 200) * 1024) / 1024)
    # Non-scalar values, which a scalar reader must skip.
    w.add_histogram("weights", np.linspace(-1.0, 1.0, 101), 0)
    w.add_text("notes", "not a scalar", 0)
    w.close()

    w2 = make_writer(a.writer, os.path.join(logdir, "run2"))
    for step in range(0, a.steps, 5):
        add(w2, "run2", "extra/metric", step, step / 4)
    w2.close()

    files = sorted(glob.glob(pattern, recursive=True))
    print(json.dumps({"writer": a.writer, "files": files, "scalars": scalars}))


if __name__ == "__main__":
    main()
