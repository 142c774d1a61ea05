"""The marker table: family x input shape -> grids and the largest marker error in cells.

For every family's real processor classes (tiny checkpoints built without hub access, as the
tests build them), paint a red marker at several known pixels of a grey image, find the cell
whose pixels in `pixel_values` hold it, and map that cell back through the stored box
(tests/geometry_markers.py). Error = max over axes of |cell centre - marker pixel centre| in
cells; a marker the processor cropped away must lie outside every box ("cropped" counts them).

    python benchmarks/geometry_table.py [--out /tmp/tamx-geometry]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.geometry_markers import inside, locate, marker_points  # noqa: E402
from tests.tiny_models import BUILDERS  # noqa: E402

SHAPES = [("square", 224, 224), ("2:1", 336, 168), ("1:3", 100, 300), ("20x20", 20, 20), ("large", 1600, 1200)]
TILES = {
    "internvl": [("1 tile", 224, 224, {}), ("2 tiles", 448, 224, {}), ("6 tiles", 672, 448, {})],
    "llava_onevision": [("1 tile", 384, 384, {}), ("2 tiles", 768, 384, {}), ("6 tiles", 1152, 768, {})],
    "gemma3": [
        ("pan&scan 0", 224, 224, {"do_pan_and_scan": True}),
        ("pan&scan 2", 1600, 1200, {"do_pan_and_scan": True}),
        ("pan&scan 4", 2000, 300, {"do_pan_and_scan": True}),
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/tamx-geometry", help="folder for the tiny checkpoints")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from tamx.pipeline.encode.loading import load_processor
    from transformers import AutoConfig

    print(f"{'family':<16} {'input':<12} {'size':>10} {'grids':>5} {'max err':>8} {'allowed':>8} {'cropped':>7}")
    worst = 0.0
    for family in ["llava", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", "internvl", "llava_onevision"]:
        folder = Path(args.out) / family
        if not (folder / "config.json").is_file():
            BUILDERS[family](folder)
        processor, config = load_processor(str(folder)), AutoConfig.from_pretrained(folder)
        for name, width, height, *options in SHAPES + TILES.get(family, []):
            kwargs = options[0] if options else {}
            errors, allowed, cropped, grids = [], [], 0, 0
            for x, y in marker_points(width, height):
                error, grids, specs, allow = locate(processor, config, width, height, x, y, **kwargs)
                if error is None:
                    assert not inside(specs, x, y), (family, name, x, y)
                    cropped += 1
                else:
                    errors.append(error)
                    allowed.append(allow)
            worst = max(worst, max(e - a + 0.5 for e, a in zip(errors, allowed)))
            size = f"{width}x{height}"
            print(
                f"{family:<16} {name:<12} {size:>10} {grids:>5} {max(errors):>8.3f} {min(allowed):>8.3f} {cropped:>7}"
            )
    print(f"largest error beyond the allowance (half a cell + half a marker pixel): {max(worst - 0.5, 0.0):.3f} cells")


if __name__ == "__main__":
    main()
