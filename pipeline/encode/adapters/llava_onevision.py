"""LLaVA-OneVision: the base view, then the anyres grid stitched from tiles, one row newline per row.

One image in a prompt: the processor squashes the whole image to one tile (the base view,
vision image_size / patch_size cells per side, 27 x 27 for SigLIP at 384 px), and also resizes
it (aspect kept) into the best `image_grid_pinpoints` resolution, pads it centred and cuts it
into tiles. The model stitches the tiles' patch grids, cuts the padding off again (unpad)
and, when the result exceeds `vision_aspect_ratio`'s budget, resamples it down (bilinear);
every row of that grid ends with an `image_newline` token. tamx maps both: the base view is a
block (1, 27, 27); the anyres grid is a block with `row_newline`, and (when not resampled) one
tile part per tile with its own box, so filters never cross a tile seam. Several images in one
prompt get the base view of the image padded to a square, plus one newline each. A video
gives (frames, ceil(side/2), ceil(side/2)) pooled cells, one frame per slice, and one newline.
Each tile's patches cover side * patch_size pixels (378 of 384), which the boxes follow.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from tamx.geometry import Canvas
from tamx.records import VisionBlock

from ..inputs import MediaItem
from .base import Adapter, AdapterError, item_size, on_canvas, slice_times, unplaced

NEWLINE = "image_newline"


class LlavaOnevisionAdapter(Adapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    token_roles = {"turn_start": "<|im_start|>", "turn_end": "<|im_end|>"}  # noqa: RUF012

    def _side(self) -> int:
        vision = self.config.vision_config
        return int(vision.image_size) // int(vision.patch_size)

    def _tile_px(self) -> int:
        ip = self.image_processor()
        crop = getattr(ip, "crop_size", None) or ip.size
        crop = crop if isinstance(crop, dict) else crop.__dict__
        return int(crop.get("height") or crop["shortest_edge"])

    def _view(self, canvas: Canvas) -> Canvas:
        """The part of a tile canvas the patch grid covers (side * patch of the tile's pixels)."""
        covered = self._side() * int(self.config.vision_config.patch_size)
        tile = self._tile_px()
        return canvas.resize(tile, tile).crop(0, 0, covered, covered)

    def _anyres(self, item: MediaItem, index: int, total: int) -> list[VisionBlock]:
        """Base view + the unpadded anyres grid of a prompt's only image, checked against `total` tokens."""
        from transformers.image_processing_utils import get_patch_output_size, select_best_resolution

        width, height = item_size(item)
        source = Canvas.source(width, height)
        side, patch, tile = self._side(), int(self.config.vision_config.patch_size), self._tile_px()
        base = on_canvas(unplaced("image", (1, side, side), index), self._view(source), item, "base")
        best_h, best_w = select_best_resolution((height, width), self.image_processor().image_grid_pinpoints)
        new_h, new_w = get_patch_output_size(
            np.broadcast_to(np.zeros((1, 1, 1), np.uint8), (height, width, 1)), (best_h, best_w), "channels_last"
        )
        pad_x, pad_y = (best_w - new_w) // 2, (best_h - new_h) // 2
        canvas = source.resize(new_w, new_h).pad(pad_x, pad_y, best_w - new_w - pad_x, best_h - new_h - pad_y)
        rows, cols = best_h // tile, best_w // tile
        # the model's unpad_image on the stitched (rows * side, cols * side) patch grid
        full_h, full_w = rows * side, cols * side
        top, left, cut_h, cut_w = 0, 0, full_h, full_w
        if width / height > full_w / full_h:
            cut_h = int(round(height * (full_w / width), 7))
            top = (full_h - cut_h) // 2
            cut_h = full_h - 2 * top
        else:
            cut_w = int(round(width * (full_h / height), 7))
            left = (full_w - cut_w) // 2
            cut_w = full_w - 2 * left
        budget = int(str(getattr(self.config, "vision_aspect_ratio", "anyres_max_9")).removeprefix("anyres_max_"))
        ratio = math.sqrt(cut_h * cut_w / (budget * side * side))
        grid_h, grid_w = (int(cut_h // ratio), int(cut_w // ratio)) if ratio > 1.1 else (cut_h, cut_w)
        if side * side + grid_h * (grid_w + 1) != total:
            raise AdapterError(
                f"the processor gave a {width}x{height} px image {total} tokens, but its anyres layout gives "
                f"{side * side + grid_h * (grid_w + 1)}; tamx cannot place the tiles"
            )

        def edge(cell: int) -> float:
            """Canvas pixel of the left / top edge of stitched patch `cell` (patches cover 378 of 384 px)."""
            return cell // side * tile + cell % side * patch

        x0, y0 = edge(left), edge(top)
        x1, y1 = edge(left + cut_w - 1) + patch, edge(top + cut_h - 1) + patch
        spec = unplaced("image", (1, grid_h, grid_w), index, row_newline=True, separator=NEWLINE)
        anyres = on_canvas(spec, canvas.crop(x0, y0, x1 - x0, y1 - y0), item, "anyres")
        if ratio > 1.1:  # resampled across the tiles: one grid over the unpadded region (seams not exact)
            return [base, anyres]
        parts, boxes = [], []
        for r in range(rows):
            r0, r1 = max(top, r * side), min(top + cut_h, (r + 1) * side)
            for c in range(cols):
                c0, c1 = max(left, c * side), min(left + cut_w, (c + 1) * side)
                if r1 <= r0 or c1 <= c0:
                    continue
                parts.append((r0 - top, c0 - left, r1 - r0, c1 - c0))
                window = canvas.crop(edge(c0), edge(r0), (c1 - c0) * patch, (r1 - r0) * patch)
                boxes.append(tuple(float(x) for x in window.box))
        return [base, replace(anyres, tiles=tuple(parts), tile_boxes=tuple(boxes))]

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        strategy = getattr(self.config, "vision_feature_select_strategy", "full")
        if strategy != "full":
            raise AdapterError(
                f"vision_feature_select_strategy={strategy!r} drops the first patch of every tile; the "
                "llava_onevision adapter supports 'full' (the checkpoints' setting) only"
            )
        replacements = processed.get("text_replacement_offsets")
        if replacements is None:
            raise AdapterError("the llava_onevision adapter needs the processor's text_replacement_offsets")
        counts = {"image": [], "video": []}
        for rep in replacements[0]:
            token = self.processor.image_token if rep["type"] == "image" else self.processor.video_token
            counts[rep["type"]].append(rep["replacement"].count(token))
        images, videos = iter(counts["image"]), iter(counts["video"])
        side = self._side()
        specs = []
        for index, item in enumerate(media):
            if item.kind == "image":
                total = next(images)
                if total == side * side + 1:  # several images: the base view of the image padded to a square
                    width, height = item_size(item)
                    square = max(width, height)
                    left, top = (square - width) // 2, (square - height) // 2
                    padded = Canvas.source(width, height).pad(left, top, square - width - left, square - height - top)
                    spec = unplaced("image", (1, side, side), index, unmapped=1, separator=NEWLINE)
                    specs.append(on_canvas(spec, self._view(padded), item))
                else:
                    specs.extend(self._anyres(item, index, total))
            else:
                total = next(videos)
                pooled = math.ceil(side / 2)
                frames = total // (pooled * pooled)
                slices = tuple((f,) for f in item.frame_indices[:frames])
                width, height = item_size(item)
                spec = unplaced(
                    "video", (frames, pooled, pooled), index, slices, unmapped=total - frames * pooled * pooled,
                    times=slice_times(item, slices), separator=NEWLINE,
                )  # fmt: skip
                specs.append(on_canvas(spec, self._view(Canvas.source(width, height)), item))
        if any(s.unmapped < 0 for s in specs):
            raise AdapterError("LLaVA-OneVision placeholders are fewer than the base grid: check the processor config")
        return specs
