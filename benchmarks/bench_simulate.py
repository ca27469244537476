"""Simulator throughput: objects/s in-process and through Ray tasks, with and without extras.

    python benchmarks/bench_simulate.py              # default sizes (~1-2 min on 2 cores)
    python benchmarks/bench_simulate.py --scale 0.2  # a quick look

In-process figures time ``simulate_shard`` after a warm-up (the SED grid, noise model and
renderer tables are built once per process). Ray figures time ``simulate_survey`` end to end
(two shards as two tasks, each task building its own tables, plus Parquet writing), after
``ray.init``. Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from raypz.sim import SurveyConfig, simulate_shard, simulate_survey

CASES = {
    "catalog": ({}, 50_000),
    "catalog + epochs": ({"epochs": True}, 20_000),
    "catalog + cutouts 32x32": ({"cutouts": True}, 4_000),
}


def in_process(options: dict, n: int) -> float:
    """Objects per second of one in-process shard of ``n`` rows (after a warm-up shard)."""
    simulate_shard(SurveyConfig(n_objects=200, seed=0, **options), 0)
    config = SurveyConfig(n_objects=n, seed=1, rows_per_shard=n, **options)
    start = time.perf_counter()
    simulate_shard(config, 0)
    return n / (time.perf_counter() - start)


def through_ray(options: dict, n: int) -> float:
    """Objects per second of a 2-shard survey of ``n`` rows written by Ray tasks."""
    config = SurveyConfig(n_objects=n, seed=2, rows_per_shard=(n + 1) // 2, **options)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        simulate_survey(config, out)
        return n / (time.perf_counter() - start)


def main() -> None:
    """Print a table of objects/s per case and mode."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every case's size")
    args = parser.parse_args()

    import ray

    from raypz.ray_runtime import init_ray

    start = time.perf_counter()
    init_ray(num_cpus=2)
    print(f"ray.init: {time.perf_counter() - start:.1f} s")
    print(f"{'case':<26} {'rows':>8} {'in-process /s':>14} {'Ray, 2 tasks /s':>16}")
    for name, (options, n) in CASES.items():
        rows = max(int(n * args.scale), 100)
        local = in_process(options, rows)
        remote = through_ray(options, 2 * rows)
        print(f"{name:<26} {rows:>8} {local:>14,.0f} {remote:>16,.0f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
