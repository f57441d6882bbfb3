#!/usr/bin/env python3
"""Baseline for `kappa bench commands`: N tasks that each run `true`, through HyperQueue (a Rust
task runner; its PyPI package `hyperqueue` embeds the engine and a LocalCluster) on one local
worker with 2 cores. Every task keeps its stdout and stderr in files (HyperQueue's default), as
kappa's command trials do. Prints one JSON line: {"tasks": N, "seconds": s, "tasks_per_s": r}.

    python3 -m pip install hyperqueue && python3 tests/bench/commands_hyperqueue.py 10000
"""

import json
import pathlib
import sys
import tempfile
import time

try:
    from hyperqueue import Job, LocalCluster
    from hyperqueue.cluster import WorkerConfig
except ImportError:
    sys.exit("hyperqueue is not installed: python3 -m pip install hyperqueue")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    cores = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as d:
        root = pathlib.Path(d)
        with LocalCluster(str(root / "server"), WorkerConfig(cores=cores)) as cluster:
            client = cluster.client()
            job = Job(default_workdir=root)
            for _ in range(n):
                job.program(["true"])
            started = time.perf_counter()
            submitted = client.submit(job)
            client.wait_for_jobs([submitted])
            seconds = time.perf_counter() - started
    print(json.dumps({"tasks": n, "seconds": seconds, "tasks_per_s": n / seconds}))


if __name__ == "__main__":
    main()
