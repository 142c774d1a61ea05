"""`tamx explain` of this checkout against an older tamx tree, as processes, side by side.

Each round runs `python -c "import numpy"`, the older tree's `tamx explain` (its `tamx` package
put first on PYTHONPATH, its `pipeline/` linked in as `tamx/pipeline`, as an install does) and
this checkout's, in turn;
medians of wall and CPU seconds, and of each round's wall ratio to the numpy import.

    git archive cd83f36 | (mkdir -p /tmp/old && tar -x -C /tmp/old)
    python benchmarks/explain_versions.py RUN /tmp/old --samples s00000 --rounds 9
    python benchmarks/explain_versions.py RUN /tmp/old --workers 1 --rounds 3   # every sample
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(command: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env}, check=True, cwd=cwd)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a run store (its maps are overwritten under the variants old and new)")
    parser.add_argument("old", help="the root of an older tamx tree (holding tamx/)")
    parser.add_argument("--samples", nargs="*", default=None, help="sample ids (default: every sample)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    old = str(Path(args.old).resolve())
    stages = Path(old, "tamx", "pipeline")
    if not stages.exists() and Path(old, "pipeline").is_dir():
        stages.symlink_to(Path(old, "pipeline"))  # tamx.pipeline of the older tree, not this checkout's
    # run from an empty folder: `python -m` puts the working folder first on sys.path, and a
    # checkout's own tamx/ there would shadow the older tree
    cwd = tempfile.mkdtemp(prefix="tamx-versions-")
    run = str(Path(args.run).resolve())
    explain = [sys.executable, "-m", "tamx.pipeline", "explain", run, "--workers", str(args.workers)]
    explain += ["--overwrite", "--quiet"] + (["--samples", *args.samples] if args.samples else [])
    commands = {
        'python -c "import numpy"': ([sys.executable, "-c", "import numpy"], {}),
        f"older tamx ({args.old})": ([*explain, "--variant", "old"], {"PYTHONPATH": old}),
        "this checkout": ([*explain, "--variant", "new"], {}),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, (command, env) in commands.items():
            times[name].append(timed(command, env, cwd))
    base = times['python -c "import numpy"']
    for name, values in times.items():
        ratios = [wall / numpy_wall for (wall, _), (numpy_wall, _) in zip(values, base)]
        wall, cpu = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        ratio = statistics.median(ratios)
        print(f"{name}: wall {wall:.2f} s, CPU {cpu:.2f} s; wall / import numpy {ratio:.2f}x ({rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
