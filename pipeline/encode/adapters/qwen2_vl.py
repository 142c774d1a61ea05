"""Qwen2-VL and Qwen2.5-VL: grids from image_grid_thw / video_grid_thw divided by the spatial merge.

A video is one block (T, H, W): each temporal slice merges `temporal_patch_size` (2) sampled frames,
with their source frame indices and timestamps. The processor resizes the whole image (or frame)
to a multiple of patch x merge pixels (`smart_resize`, aspect ratio kept up to that rounding):
every grid covers its whole image, and the grid must be the one smart_resize gives for it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tamx.geometry import Canvas
from tamx.records import VisionBlock

from ..inputs import MediaItem
from .base import Adapter, AdapterError, item_size, on_canvas, slice_times, unplaced


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

    def _check_resize(self, item: MediaItem, grid: tuple[int, int, int]) -> None:
        """The grid must be smart_resize's for this item under the processor's settings, else refuse."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        source = getattr(self.processor, "video_processor", None) if item.kind == "video" else None
        source = source if source is not None and hasattr(source, "size") else self.image_processor()
        size = source.size if isinstance(source.size, dict) else source.size.__dict__
        patch = int(getattr(source, "patch_size", None) or self.vision_config().patch_size)
        width, height = item_size(item)
        expected = smart_resize(
            height, width, factor=patch * self.merge_size(), min_pixels=size["shortest_edge"],
            max_pixels=size["longest_edge"],
        )  # fmt: skip
        found = (grid[1] * patch * self.merge_size(), grid[2] * patch * self.merge_size())
        if tuple(expected) != found:
            raise AdapterError(
                f"the {item.kind} {width}x{height} px became a {found[1]}x{found[0]} px grid, not the "
                f"{expected[1]}x{expected[0]} px that smart_resize gives; tamx cannot place this grid"
            )

    def _placed(self, spec: VisionBlock, item: MediaItem) -> VisionBlock:
        self._check_resize(item, spec.grid)
        # smart_resize scales the whole image: the grid's outer edges are the image's
        width, height = item_size(item)
        return on_canvas(spec, Canvas.source(width, height), item)

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        images = iter(self._grids(processed, "image_grid_thw", sum(m.kind == "image" for m in media)))
        videos = iter(self._grids(processed, "video_grid_thw", sum(m.kind == "video" for m in media)))
        specs = []
        for index, item in enumerate(media):
            if item.kind == "image":
                specs.append(self._placed(unplaced("image", next(images), index), item))
            else:
                grid = next(videos)
                frames = self.video_slices(item, self.temporal_patch_size(), grid[0])
                spec = unplaced("video", grid, index, frames, times=slice_times(item, frames))
                specs.append(self._placed(spec, item))
        return specs
