"""LLaVA-OneVision: the base grid only; the anyres tiles and newline tokens stay unmapped.

For one image the processor writes the base view (vision image_size / patch_size per side,
27 x 27 for SigLIP at 384 px), then the stitched, unpadded high-resolution grid with an
`image_newline` token closing every row, all as `<image>` tokens. tamx maps the base view and
records the rest as the block's `unmapped` tokens (they are neither vision cells nor context).
Several images in one prompt get the base view plus one newline each. A video gives
(frames, ceil(side/2), ceil(side/2)) pooled cells, one frame per slice, and one newline.
"""

from __future__ import annotations

import math
from typing import Any

from ..inputs import MediaItem
from .base import Adapter, AdapterError, BlockSpec


class LlavaOnevisionAdapter(Adapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    token_roles = {"turn_start": "<|im_start|>", "turn_end": "<|im_end|>"}  # noqa: RUF012

    def _side(self) -> int:
        vision = self.config.vision_config
        return int(vision.image_size) // int(vision.patch_size)

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[BlockSpec]:
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
                specs.append(BlockSpec("image", (1, side, side), index, unmapped=total - side * side))
            else:
                total = next(videos)
                pooled = math.ceil(side / 2)
                frames = total // (pooled * pooled)
                grid = (frames, pooled, pooled)
                slices = tuple((f,) for f in item.frame_indices[:frames])
                specs.append(BlockSpec("video", grid, index, slices, unmapped=total - frames * pooled * pooled))
        if any(s.unmapped < 0 for s in specs):
            raise AdapterError("LLaVA-OneVision placeholders are fewer than the base grid: check the processor config")
        return specs
