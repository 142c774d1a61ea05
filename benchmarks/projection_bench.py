"""What projecting maps through their boxes costs eval, against the plain resize it replaced.

Eval used to stretch every uint8 map over the mask with one `cv2.resize`; it now projects it
through the grids' boxes (`tamx.geometry.project_maps`). Both are timed here in the same run on
a 640x480 mask, for a grid over the whole image, a centre crop, and two tiles plus a thumbnail.

    python benchmarks/projection_bench.py [--maps 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tamx.geometry import Canvas, project_maps  # noqa: E402
from tamx.layout import map_frames  # noqa: E402
from tamx.records import VisionBlock  # noqa: E402

SIZE = (480, 640)


def layouts() -> dict[str, list[VisionBlock]]:
    image = Canvas.source(SIZE[1], SIZE[0])
    size = (SIZE[1], SIZE[0])
    tiles = [image.tile(1, 2, 0, 0).box, image.tile(1, 2, 0, 1).box, image.box]
    return {
        "whole image (no box)": [VisionBlock(0, (1, 16, 16))],
        "centre crop": [VisionBlock(0, (1, 16, 16), box=(80.0, 0.0, 560.0, 480.0), image_size=size)],
        "2 tiles + thumbnail": [VisionBlock(i * 256, (1, 16, 16), box=b, image_size=size) for i, b in enumerate(tiles)],
    }


def best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{args.maps} uint8 maps onto a {SIZE[1]}x{SIZE[0]} mask, best of {args.repeat}")
    print(f"{'layout':<22} {'resize ms/map':>13} {'mean ms/map':>12} {'finest ms/map':>14} {'mean/resize':>12}")
    for name, blocks in layouts().items():
        frames = map_frames(blocks)
        maps = rng.integers(0, 256, (args.maps, sum(b.size for b in blocks)), dtype=np.uint8)
        grids = maps[:, :256].reshape(-1, 16, 16)

        def resize(grids=grids):
            for grid in grids:
                cv2.resize(grid, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_LINEAR)

        baseline = best(resize, args.repeat) / args.maps * 1e3
        mean = best(lambda m=maps, f=frames: project_maps(m, f, SIZE, "mean"), args.repeat) / args.maps * 1e3
        finest = best(lambda m=maps, f=frames: project_maps(m, f, SIZE, "finest"), args.repeat) / args.maps * 1e3
        print(f"{name:<22} {baseline:>13.3f} {mean:>12.3f} {finest:>14.3f} {mean / baseline:>12.1f}")


if __name__ == "__main__":
    main()
