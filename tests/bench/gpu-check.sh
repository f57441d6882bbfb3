#!/usr/bin/env bash
# The GPU check of issue #7, on a machine with an NVIDIA GPU:
#   1. nvidia-smi; find libnvrtc (system, CUDA toolkit, or PyTorch's pip wheel) for NVRTC;
#   2. build release (or use binaries prebuilt elsewhere, see below);
#   3. the CUDA backend's own tests (Philox known answers, CPU/GPU agreement, NVRTC compile);
#   4. THEORY.md §6 oracle tests on the GPU backend (KAPPA_TEST_BACKEND=cuda);
#   5. `kappa bench gpu`: SignSGD SDE and AdamW, 16,384 paths × d = 1024, 200 steps, against
#      PyTorch eager in the same run, with element-steps/s and the ratio.
#
# Usage (from the repository root):  tests/bench/gpu-check.sh
# Without cargo on the GPU machine (or without crates.io there): on a machine with cargo run
#   tests/bench/gpu-prebuild.sh            # writes gpu-bin/: kappa, oracle, cuda_backend
# copy gpu-bin/ along, and run   KAPPA_PREBUILT=gpu-bin tests/bench/gpu-check.sh
# Exit status: 0 when every step passed and every target was met.
set -euo pipefail
cd "$(dirname "$0")/../.."

step() { printf '\n=== %s ===\n' "$*"; }
fail() { printf '\nGPU CHECK FAILED: %s\n' "$*" >&2; exit 1; }

step "GPU"
command -v nvidia-smi >/dev/null || fail "nvidia-smi not found: no NVIDIA driver on this machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv || fail "nvidia-smi failed"

step "NVRTC"
nvrtc_dirs=()
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    for d in /usr/local/cuda/lib64 /usr/local/cuda-*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib; do
        [ -d "$d" ] && ls "$d"/libnvrtc.so* >/dev/null 2>&1 && nvrtc_dirs+=("$d")
    done
    py_nvrtc=$(python3 - 2>/dev/null <<'PY' || true
import importlib, os
for name in ("nvidia.cuda_nvrtc", "nvidia.cu13", "nvidia.cuda_runtime"):
    try:
        m = importlib.import_module(name)
    except Exception:
        continue
    for p in getattr(m, "__path__", []):
        for sub in ("lib", "lib64"):
            d = os.path.join(p, sub)
            if os.path.isdir(d) and any(f.startswith("libnvrtc") for f in os.listdir(d)):
                print(d)
PY
)
    [ -n "$py_nvrtc" ] && nvrtc_dirs+=($py_nvrtc)
fi
if [ ${#nvrtc_dirs[@]} -gt 0 ]; then
    export LD_LIBRARY_PATH="$(IFS=:; echo "${nvrtc_dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "libnvrtc from: ${nvrtc_dirs[*]}"
else
    ldconfig -p 2>/dev/null | grep libnvrtc || echo "libnvrtc not found by ldconfig or in CUDA/pip paths; the tests below say so if NVRTC cannot be loaded"
fi

if [ -n "${KAPPA_PREBUILT:-}" ]; then
    step "prebuilt binaries from $KAPPA_PREBUILT"
    kappa="$KAPPA_PREBUILT/kappa"
    oracle="$KAPPA_PREBUILT/oracle"
    cuda_tests="$KAPPA_PREBUILT/cuda_backend"
    for f in "$kappa" "$oracle" "$cuda_tests"; do [ -x "$f" ] || fail "$f missing (run tests/bench/gpu-prebuild.sh)"; done
else
    command -v cargo >/dev/null || fail "cargo not found: install Rust, or prebuild (tests/bench/gpu-prebuild.sh) and set KAPPA_PREBUILT"
    step "cargo build --release"
    cargo build --release -p kappa-cli
    kappa="${CARGO_TARGET_DIR:-target}/release/kappa"
    bins=$(cargo test --release -p kappa-sim --test oracle --test cuda_backend --no-run --message-format=json \
        | python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("oracle", "cuda_backend"):
        print(m["target"]["name"], m["executable"])')
    oracle=$(echo "$bins" | awk '$1 == "oracle" {print $2}')
    cuda_tests=$(echo "$bins" | awk '$1 == "cuda_backend" {print $2}')
    [ -x "$oracle" ] && [ -x "$cuda_tests" ] || fail "test binaries not built"
fi

status=0
step "CUDA backend tests (Philox known answers, NVRTC, CPU/GPU agreement)"
KAPPA_REQUIRE_NVRTC=1 "$cuda_tests" --nocapture --test-threads=1 || { status=1; echo "CUDA backend tests FAILED"; }

step "THEORY.md §6 oracle tests on the GPU backend"
KAPPA_TEST_BACKEND=cuda "$oracle" --nocapture --test-threads=1 || { status=1; echo "oracle tests on the GPU FAILED"; }

step "benchmark: kappa (CUDA) vs PyTorch eager"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' \
    || echo "PyTorch not importable: the baseline will be reported as failed"
"$kappa" bench gpu --paths 16384 --dim 1024 --steps 200 || { status=1; echo "benchmark: targets NOT all met (or it failed)"; }

if [ "$status" -eq 0 ]; then echo; echo "GPU CHECK PASSED"; else echo; echo "GPU CHECK: some steps FAILED (see above)"; fi
exit "$status"
