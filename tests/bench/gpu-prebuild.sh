#!/usr/bin/env bash
# Builds what tests/bench/gpu-check.sh runs, for a GPU machine without cargo or crates.io:
# gpu-bin/{kappa,oracle,cuda_backend} (release). Then: KAPPA_PREBUILT=gpu-bin tests/bench/gpu-check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-gpu-bin}
cargo build --release -p kappa-cli
mkdir -p "$out"
cp "${CARGO_TARGET_DIR:-target}/release/kappa" "$out/kappa"
cargo test --release -p kappa-sim --test oracle --test cuda_backend --no-run --message-format=json \
    | python3 -c 'import json,sys,shutil
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("oracle", "cuda_backend"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])' "$out"
strip "$out"/* 2>/dev/null || true
ls -la "$out"
