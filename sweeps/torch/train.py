#!/usr/bin/env python3
"""A small CNN on the 8x8 handwritten digits, trained with PyTorch: an example kappa command task.

It speaks kappa's metrics format: one JSON object per line on stdout with `step`, `samples` and
`loss` (the training loss of the minibatch, averaged since the previous line), plus `test_loss` and
`test_accuracy` on a fixed held-out split, and `noise_scale`: the gradient noise scale
B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018), estimated from the gradients of a fresh
probe minibatch and of the whole training split, which kappa's report reads at the target loss
next to the critical batch size. Any other output is only logged by kappa.

    python3 sweeps/torch/train.py --optimizer adamw --lr 1e-3 --batch-size 64 --samples 200000

Checkpoints (kappa's checkpoint protocol): every `--checkpoint-every` metrics lines it saves the
model, the optimizer, the RNG states, the data order, the step and the curve so far to
$KAPPA_TRIAL_DIR/checkpoint.pt (written to a temporary file, then renamed); a later attempt of the
same trial finds it, re-emits the curve and goes on from that step. Every line says which step
this attempt started from (`resumed_from`).

Successive halving (kappa's `[search] kind = "halving"`): `--stop-at {samples}` stops at the
rung's budget (at the last metrics line within it, so the lines are the whole run's), checkpoints
there and exits 0; the next rung's attempt continues from that checkpoint. `--samples` stays the
whole budget: it sets where the lines are.

Runs on the GPU when one is visible (kappa sets CUDA_VISIBLE_DEVICES for trials that ask for
`resources.gpus`), on the CPU otherwise. The data is the copy kappa ships
(crates/train/data/digits.csv: UCI "Optical Recognition of Handwritten Digits", CC BY 4.0).
"""

import argparse
import json
import math
import os
import sys

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "crates", "train", "data", "digits.csv")


class SignSGD(torch.optim.Optimizer):
    """x <- x - lr * sign(g) - lr * weight_decay * x (decoupled decay, as kappa's SignSGD has none by default)."""

    def __init__(self, params, lr, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(p.grad), alpha=-group["lr"])


def load_digits(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            values = line.split(",")
            if len(values) != 65:
                sys.exit(f"{path}:{n}: expected 65 columns (64 pixels and a label), got {len(values)}")
            rows.append([float(v) for v in values])
    data = torch.tensor(rows)
    x = (data[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    y = data[:, 64].long()
    return x, y


class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.features(x))


def noise_scale(model, loss_fn, x, y, batch, gen):
    """B_simple = tr(Sigma) / |G|^2 from two batch sizes (McCandlish et al. 2018, appendix A): with
    |g_b|^2 the squared norm of a batch-b gradient, E|g_b|^2 = |G|^2 + tr(Sigma)/b, so a probe batch
    of `batch` samples and the whole split of n give unbiased estimates of both. The probe batch
    comes from its own generator and no parameter's .grad is touched: training is unchanged.
    None when an estimate is not positive (noise at this point)."""
    params = [p for p in model.parameters() if p.requires_grad]

    def squared_norm(xs, ys):
        grads = torch.autograd.grad(loss_fn(model(xs), ys), params)
        return sum((g * g).sum() for g in grads).item()

    n = len(y)
    if batch >= n:
        return None
    idx = torch.randperm(n, generator=gen)[:batch].to(x.device)
    small, full = squared_norm(x[idx], y[idx]), squared_norm(x, y)
    g2 = (n * full - batch * small) / (n - batch)
    trace = (small - full) / (1.0 / batch - 1.0 / n)
    return trace / g2 if g2 > 0 and trace > 0 else None


def make_optimizer(name, params, a):
    if name == "sgd":
        return torch.optim.SGD(params, lr=a.lr)
    if name == "signsgd":
        return SignSGD(params, lr=a.lr, weight_decay=a.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps, weight_decay=a.weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=a.lr, alpha=a.beta2, eps=a.eps)
    sys.exit(f"unknown optimizer {name!r} (sgd, signsgd, adam, adamw, rmsprop)")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--optimizer", default="adamw")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--beta1", type=float, default=0.9)
    p.add_argument("--beta2", type=float, default=0.999)
    p.add_argument("--eps", type=float, default=1e-8)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=200_000, help="budget in samples seen (steps x batch size)")
    p.add_argument("--records", type=int, default=50, help="metrics lines per run")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--checkpoint-every", type=int, default=5, help="metrics lines between checkpoints (0: none)")
    p.add_argument("--stop-at", type=int, default=None,
                   help="stop at this many samples, checkpointed (a rung of successive halving: kappa's {samples})")
    a = p.parse_args()
    trial_dir = os.environ.get("KAPPA_TRIAL_DIR")
    wants_ckpt = a.checkpoint_every > 0 or a.stop_at is not None
    ckpt = os.path.join(trial_dir, "checkpoint.pt") if trial_dir and wants_ckpt else None

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device {device}, optimizer {a.optimizer}, lr {a.lr}, batch {a.batch_size}", file=sys.stderr)
    x, y = load_digits(a.data)
    # A fixed split (not the trial's seed): every trial sees the same held-out set.
    split = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    n_test = len(y) // 5
    test_idx, train_idx = split[:n_test], split[n_test:]
    xtr, ytr = x[train_idx].to(device), y[train_idx].to(device)
    xte, yte = x[test_idx].to(device), y[test_idx].to(device)
    if a.batch_size > len(ytr):
        sys.exit(f"batch size {a.batch_size} is larger than the training set ({len(ytr)})")

    torch.manual_seed(a.seed)
    model = Net(a.width).to(device)
    opt = make_optimizer(a.optimizer, model.parameters(), a)
    loss_fn = nn.CrossEntropyLoss()
    steps = max(1, a.samples // a.batch_size)
    every = max(1, steps // a.records)
    gen = torch.Generator(device="cpu").manual_seed(a.seed)
    probe_gen = torch.Generator(device="cpu").manual_seed(a.seed + 1_000_003)
    order, pos = torch.randperm(len(ytr), generator=gen), 0
    running, count = 0.0, 0
    start, curve, lines = 1, [], 0
    if ckpt and os.path.exists(ckpt):
        # RNG states must stay on the CPU; load_state_dict moves the rest to the device.
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["gen"])
        if "probe_gen" in state:
            probe_gen.set_state(state["probe_gen"])
        torch.set_rng_state(state["torch_rng"])
        cuda_rng = state.get("cuda_rng")
        if cuda_rng is not None and torch.cuda.is_available() and len(cuda_rng) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_rng)
        order, pos, start, curve = state["order"], state["pos"], state["step"] + 1, state["curve"]
        lines = len(curve)
        print(f"resumed from step {state['step']}", file=sys.stderr)
        for line in curve:  # the whole curve goes to the attempt kappa counts
            print(json.dumps(line), flush=True)
    resumed = start - 1
    # A rung ends at the last metrics line within its budget (the first line's step at least).
    stop = steps
    if a.stop_at is not None and a.stop_at // a.batch_size < steps:
        stop = max(every, (a.stop_at // a.batch_size) // every * every)
    for step in range(start, stop + 1):
        if pos + a.batch_size > len(order):  # a new epoch: sampling without replacement
            order, pos = torch.randperm(len(ytr), generator=gen), 0
        idx = order[pos:pos + a.batch_size].to(device)
        pos += a.batch_size
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xtr[idx]), ytr[idx])
        loss.backward()
        opt.step()
        running += loss.item()
        count += 1
        if step % every == 0 or step == steps:
            train_loss = running / count
            running, count = 0.0, 0
            with torch.no_grad():
                logits = model(xte)
                test_loss = loss_fn(logits, yte).item()
                acc = (logits.argmax(1) == yte).float().mean().item()
            line = {"step": step, "samples": step * a.batch_size, "loss": train_loss,
                    "test_loss": test_loss, "test_accuracy": acc, "resumed_from": resumed}
            if math.isfinite(train_loss):
                b_simple = noise_scale(model, loss_fn, xtr, ytr, a.batch_size, probe_gen)
                if b_simple is not None:
                    line["noise_scale"] = b_simple
            print(json.dumps(line), flush=True)
            if not math.isfinite(train_loss):
                break  # kappa records the trial as diverged
            curve.append(line)
            lines += 1
            every_ckpt = a.checkpoint_every > 0 and lines % a.checkpoint_every == 0
            if ckpt and (every_ckpt or step == steps or step == stop):
                state = {
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "gen": gen.get_state(),
                    "probe_gen": probe_gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    "order": order, "pos": pos, "step": step, "curve": curve,
                }
                with open(ckpt + ".tmp", "wb") as f:
                    torch.save(state, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(ckpt + ".tmp", ckpt)


if __name__ == "__main__":
    main()
