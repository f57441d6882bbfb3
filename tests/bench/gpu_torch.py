#!/usr/bin/env python3
"""PyTorch eager baseline for `kappa bench gpu`: the same workloads as kappa's CUDA backend.

SignSGD's SDE (Compagnoni, Euler-Maruyama with dt = lr) or AdamW (discrete, bias-corrected,
decoupled decay lr*wd*x) on the quadratic f(x) = 1/2 sum lambda_i x_i^2 with lambda_i = 10 i^-1,
Gaussian gradient noise of scale sigma, float32 on the GPU, every path at once. Like kappa, the
loss of every path is computed every step (summed after burn-in) and stored every 10% of the
steps. Prints one JSON line: element_steps_per_s = paths * dim * steps / seconds.
"""

import argparse
import json
import math
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", choices=["signsgd_sde", "adamw"], required=True)
    ap.add_argument("--paths", type=int, default=16384)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--x0", type=float, default=0.5)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--beta2", type=float, default=0.999)
    ap.add_argument("--eps", type=float, default=1e-8)
    ap.add_argument("--device", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("PyTorch sees no CUDA device")
    dev = torch.device(f"cuda:{a.device}")
    lam = 10.0 * torch.arange(1, a.dim + 1, device=dev, dtype=torch.float32).pow(-1.0)
    record_every = max(1, a.steps // 10)
    burn_in = a.steps // 2
    gen = torch.Generator(device=dev)
    gen.manual_seed(0)

    def run(steps):
        x = torch.full((a.paths, a.dim), a.x0, device=dev, dtype=torch.float32)
        stationary = torch.zeros(a.paths, device=dev, dtype=torch.float64)
        records = []
        if a.workload == "signsgd_sde":
            dt = a.lr
            c = math.sqrt(a.lr * dt)
            inv = 1.0 / (math.sqrt(2.0) * a.sigma)
            for k in range(1, steps + 1):
                drift = torch.erf(lam * x * inv)
                z = torch.randn(x.shape, device=dev, dtype=torch.float32, generator=gen)
                x = x - drift * dt + c * torch.sqrt(torch.clamp(1.0 - drift * drift, min=0.0)) * z
                loss = 0.5 * (lam * x * x).sum(dim=1)
                if k > burn_in:
                    stationary += loss
                if k % record_every == 0 or k == steps:
                    records.append(loss.clone())
        else:
            m = torch.zeros_like(x)
            v = torch.zeros_like(x)
            for k in range(1, steps + 1):
                g = lam * x + a.sigma * torch.randn(x.shape, device=dev, dtype=torch.float32, generator=gen)
                m.mul_(a.beta1).add_(g, alpha=1.0 - a.beta1)
                v.mul_(a.beta2).addcmul_(g, g, value=1.0 - a.beta2)
                corr1 = 1.0 / (1.0 - a.beta1**k)
                corr2 = 1.0 / (1.0 - a.beta2**k)
                denom = (v * corr2).sqrt_().add_(a.eps)
                x = x - a.lr * (m * corr1) / denom - a.lr * a.wd * x
                loss = 0.5 * (lam * x * x).sum(dim=1)
                if k > burn_in:
                    stationary += loss
                if k % record_every == 0 or k == steps:
                    records.append(loss.clone())
        curve = torch.stack(records).mean(dim=1)
        return (stationary / max(1, steps - burn_in)).mean(), curve

    run(min(a.steps, 5))  # warm-up: kernels, allocator
    torch.cuda.synchronize(dev)
    best = float("inf")
    stationary = float("nan")
    for _ in range(max(1, a.repeat)):
        torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        st, curve = run(a.steps)
        stationary = float(st.item())  # synchronises
        curve.cpu()
        best = min(best, time.perf_counter() - t0)
    work = a.paths * a.dim * a.steps
    print(json.dumps({
        "workload": a.workload,
        "element_steps_per_s": work / best,
        "seconds": best,
        "stationary_loss": stationary,
        "device": torch.cuda.get_device_name(dev),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
