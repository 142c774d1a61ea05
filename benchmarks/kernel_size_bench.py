"""What a filter window costs: explain time of one 17 x 23 image sample against --kernel-size.

Why `tamx explain` refuses a kernel wider than every grid it would filter
(`tamx.pipeline.explain.check_kernel_fits`): the rank Gaussian filter sorts each k x k window
(insertion sort up to 11 x 11, about k^4 per cell; quicksort above, about k^2 log k), and a
typo (101 for 11) would take minutes per sample. Prints
seconds per sample and the ratio to k = 3, measured in the same run, and the time the check
takes to refuse over a store of samples (it reads their block metadata only).

    python benchmarks/kernel_size_bench.py [--kernels 3,5,11,23,45] [--samples 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tamx.pipeline.explain import check_kernel_fits  # noqa: E402

from tamx import ExplainSettings, create_run, explain_sample, open_run  # noqa: E402
from tamx.errors import TamxError  # noqa: E402
from tamx.synthetic import synthetic_run_info, synthetic_sample  # noqa: E402

GRID = (1, 17, 23)  # a 640 x 480 image in Qwen2-VL


def seconds(sample, kernel: int, repeats: int) -> float:
    """The best of `repeats` explain times of `sample` with the default settings but `kernel`."""
    settings = ExplainSettings(kernel_size=kernel)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        explain_sample(sample, settings)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="3,5,11,23,45", help="comma-separated odd kernel sizes")
    parser.add_argument("--samples", type=int, default=300, help="samples in the store the check scans")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    kernels = [int(k) for k in args.kernels.split(",")]

    sample = synthetic_sample("bench", grids=[GRID], n_answer=20, seed=0)
    explain_sample(sample, ExplainSettings())  # compile the numba kernels first
    base = seconds(sample, 3, args.repeats)
    print(f"one sample, grid {GRID[1]}x{GRID[2]}, 20 answer tokens, top-3 candidates, prompt maps")
    print(f"{'kernel':>7} {'s/sample':>10} {'x k=3':>8}")
    for kernel in kernels:
        took = base if kernel == 3 else seconds(sample, kernel, 1 if kernel > 23 else args.repeats)
        print(f"{kernel:>7} {took:>10.3f} {took / base:>8.1f}")

    with tempfile.TemporaryDirectory() as folder:
        run = create_run(Path(folder) / "run", synthetic_run_info())
        for i in range(args.samples):
            run.write_sample(synthetic_sample(f"s{i:04d}", grids=[GRID], n_answer=2, top_k=0, seed=i))
        run = open_run(run.path)
        ids = run.sample_ids()
        for kernel in (GRID[2], GRID[2] + 2):
            started = time.perf_counter()
            try:
                check_kernel_fits(run, ids, ExplainSettings(kernel_size=kernel))
                verdict = "accepted"
            except TamxError:
                verdict = "refused"
            took = time.perf_counter() - started
            print(f"check --kernel-size {kernel} over {len(ids)} samples: {verdict} in {took:.3f} s")


if __name__ == "__main__":
    main()
