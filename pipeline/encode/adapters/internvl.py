"""InternVL (the transformers-native InternVL3 classes): dynamic tiles plus a thumbnail per image.

With `crop_to_patches` (the InternVL3-hf default) the image processor picks a cols x rows tile
layout closest to the image's aspect ratio (`get_optimal_tiled_canvas`, within min/max
patches), resizes the image to cols x rows tiles and cuts them row by row, then adds the whole
image resized to one tile (the thumbnail) when there is more than one tile. All of an image's
tiles sit in one `<img>...</img>` run; each tile is a block (1, side, side) of the same media
item, its patches pixel-shuffled by `downsample_ratio`, with its own box. A video gives one
block per frame (`FrameN: <img>...</img>`), each covering that sampled frame.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any, ClassVar

from tamx.geometry import Canvas
from tamx.records import VisionBlock

from ..inputs import MediaItem
from .base import Adapter, AdapterError, item_size, on_canvas, slice_times, unplaced


class InternVLAdapter(Adapter):
    family = "internvl"
    model_types = ("internvl",)
    token_roles: ClassVar[dict[str, str]] = {
        "vision_start": "<img>",
        "vision_end": "</img>",
        "turn_start": "<|im_start|>",
        "turn_end": "<|im_end|>",
    }

    def resolve_special_tokens(self) -> dict[str, int]:
        roles = super().resolve_special_tokens()
        # InternVL videos reuse the image context token per frame: there is no separate video placeholder
        roles.pop("video_token", None)
        return roles

    def _side(self, processed: dict[str, Any]) -> int:
        patch = self.config.vision_config.patch_size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        height = int(processed["pixel_values"].shape[-2])
        return int(height // int(patch) * self.config.downsample_ratio)

    def placeholder_ids(self) -> dict[str, int]:
        image = self.special_tokens()["image_token"]
        return {"image": image, "video": image}

    def _tile_layout(self, item: MediaItem) -> tuple[int, int]:
        """(cols, rows) of the processor's tiles of `item` under its settings."""
        ip = self.image_processor()
        module = importlib.import_module(type(ip).__module__)
        layout = getattr(module, "get_optimal_tiled_canvas", None)
        if layout is None:
            raise AdapterError(f"{type(ip).__name__} does not expose its tile layout; tamx cannot place its tiles")
        size = ip.size if isinstance(ip.size, dict) else ip.size.__dict__
        width, height = item_size(item)
        return layout((height, width), (size["height"], size["width"]), int(ip.min_patches), int(ip.max_patches))

    def _image_specs(self, item: MediaItem, index: int, side: int, tiled: bool) -> list[VisionBlock]:
        width, height = item_size(item)
        source = Canvas.source(width, height)
        whole = on_canvas(unplaced("image", (1, side, side), index), source, item)
        cols, rows = self._tile_layout(item) if tiled else (1, 1)
        if cols * rows == 1:
            return [whole]
        canvas = source.resize(cols, rows)  # any size: only the split into equal tiles matters
        tiles = [
            on_canvas(whole, canvas.tile(rows, cols, r, c), item, f"tile {r + 1},{c + 1}")
            for r in range(rows)
            for c in range(cols)
        ]
        return [*tiles, replace(whole, label="thumbnail")]

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        side = self._side(processed)
        views = int(processed["pixel_values"].shape[0])
        frames = sum(len(m.frame_indices) for m in media if m.kind == "video")
        images = [m for m in media if m.kind == "image"]
        # one view per image and frame: no tiling happened; more: the processor's tiles
        tiled = views != len(images) + frames
        specs = []
        for index, item in enumerate(media):
            if item.kind == "image":
                specs.extend(self._image_specs(item, index, side, tiled))
            else:
                width, height = item_size(item)
                for f in item.frame_indices:
                    spec = unplaced("video", (1, side, side), index, ((f,),), times=slice_times(item, ((f,),)))
                    specs.append(on_canvas(spec, Canvas.source(width, height), item))
        if len(specs) != views:
            raise AdapterError(
                f"the processor made {views} views of the inputs, but its tiling settings give {len(specs)}; "
                "tamx cannot place the tiles (call with crop_to_patches=False for one tile per image)"
            )
        return specs
