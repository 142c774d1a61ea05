"""Tiles and thumbnail: compose at the finest tile ("finest") or average with the thumbnail ("mean")?

A planted world with known truth, laid out like InternVL's dynamic tiles: an image cut into
cols x rows tiles of side x side cells plus a thumbnail of side x side cells over the whole
image. Every grid's cell holds the fraction of a planted object mask inside the cell, plus
Gaussian noise and salt-and-pepper cells, drawn independently per grid (the tiles and the
thumbnail are separate forward passes). Each map is projected onto the image's pixels with
`tamx.geometry.project_frames` and scored like eval (uint8, Otsu, IoU with the mask).

    python benchmarks/tile_compose.py [--samples 200] [--noise 0.15] [--salt 0.05]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tamx.geometry import Canvas, project_frames  # noqa: E402
from tamx.layout import map_frames  # noqa: E402
from tamx.metrics import iou, otsu  # noqa: E402
from tamx.records import VisionBlock  # noqa: E402

TILE_PX = 224


def planted_mask(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(1, 4)):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(width // 16, width // 5)), int(rng.integers(height // 16, height // 4)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask.astype(bool)


def grid_of(mask: np.ndarray, box: tuple[float, float, float, float], side: int) -> np.ndarray:
    """Fraction of the mask in each of side x side cells of the box (area average)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    return cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (side, side), interpolation=cv2.INTER_AREA)


def noisy(rng: np.random.Generator, grid: np.ndarray, noise: float, salt: float) -> np.ndarray:
    out = grid + rng.normal(0.0, noise, grid.shape)
    hit = rng.random(grid.shape) < salt
    out[hit] = rng.choice([0.0, 1.5], size=int(hit.sum()))
    return np.maximum(out, 0.0).astype(np.float32)


def score(values: np.ndarray, frames, mask: np.ndarray, compose: str) -> float:
    low, high = float(values.min()), float(values.max())
    quantised = np.floor((values - low) / (high - low or 1.0) * 255).astype(np.uint8)
    heat, seen = project_frames(quantised, frames, mask.shape, compose)
    return iou(otsu(heat, seen)[1], mask)


def run(rows: int, cols: int, side: int, samples: int, noise: float, salt: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    width, height = cols * TILE_PX, rows * TILE_PX
    source = Canvas.source(width, height)
    boxes = [source.tile(rows, cols, r, c).box for r in range(rows) for c in range(cols)] + [source.box]
    size = (width, height)
    blocks = [VisionBlock(i * side * side, (1, side, side), box=b, image_size=size) for i, b in enumerate(boxes)]
    frames = map_frames(blocks)
    tiles_only, thumbnail_only = frames[:-1], frames[-1:]
    scores: dict[str, list[float]] = {"finest": [], "mean": [], "tiles only": [], "thumbnail only": []}
    for _ in range(samples):
        mask = planted_mask(rng, width, height)
        values = np.concatenate([noisy(rng, grid_of(mask, b, side), noise, salt).ravel() for b in boxes])
        scores["finest"].append(score(values, frames, mask, "finest"))
        scores["mean"].append(score(values, frames, mask, "mean"))
        scores["tiles only"].append(score(values, tiles_only, mask, "finest"))
        scores["thumbnail only"].append(score(values, thumbnail_only, mask, "finest"))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--side", type=int, default=16, help="cells per tile side (InternVL3: 16)")
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--salt", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"mean Obj-IoU over {args.samples} planted images (noise {args.noise}, salt {args.salt})")
    print(f"{'layout':<14} {'finest':>8} {'mean':>8} {'tiles only':>11} {'thumbnail':>10}")
    for rows, cols in ((1, 2), (2, 3)):
        result = run(rows, cols, args.side, args.samples, args.noise, args.salt, args.seed)
        print(
            f"{f'{cols}x{rows} tiles':<14} {result['finest']:>8.4f} {result['mean']:>8.4f} "
            f"{result['tiles only']:>11.4f} {result['thumbnail only']:>10.4f}"
        )


if __name__ == "__main__":
    main()
