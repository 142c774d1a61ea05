"""Qwen2-VL and Qwen2.5-VL: grids from image_grid_thw / video_grid_thw divided by the spatial merge.

A video is one block (T, H, W): each temporal slice merges `temporal_patch_size` (2) sampled frames.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..inputs import MediaItem
from .base import Adapter, AdapterError, BlockSpec


class Qwen2VLAdapter(Adapter):
    family = "qwen2_vl"
    model_types = ("qwen2_vl", "qwen2_5_vl")
    token_roles: ClassVar[dict[str, str]] = {"turn_start": "<|im_start|>", "turn_end": "<|im_end|>"}

    def vision_config(self) -> Any:
        return self.config.vision_config

    def merge_size(self) -> int:
        return int(self.vision_config().spatial_merge_size)

    def temporal_patch_size(self) -> int:
        return int(self.vision_config().temporal_patch_size)

    def frame_multiple(self) -> int:
        return self.temporal_patch_size()

    def _grids(self, processed: dict[str, Any], key: str, count: int) -> list[tuple[int, int, int]]:
        grids = processed.get(key)
        if count and grids is None:
            raise AdapterError(f"the processor returned no {key} for {count} input(s)")
        merge = self.merge_size()
        rows = [] if grids is None else [tuple(int(x) for x in row) for row in grids.tolist()]
        if len(rows) != count:
            raise AdapterError(f"the processor returned {len(rows)} {key} rows for {count} input(s)")
        return [(t, h // merge, w // merge) for t, h, w in rows]

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[BlockSpec]:
        images = iter(self._grids(processed, "image_grid_thw", sum(m.kind == "image" for m in media)))
        videos = iter(self._grids(processed, "video_grid_thw", sum(m.kind == "video" for m in media)))
        specs = []
        for index, item in enumerate(media):
            if item.kind == "image":
                specs.append(BlockSpec("image", next(images), index))
            else:
                grid = next(videos)
                frames = self.video_slices(item, self.temporal_patch_size(), grid[0])
                specs.append(BlockSpec("video", grid, index, frames))
        return specs
