"""Qwen3-VL (dense): grids as in Qwen2-VL, but a video is one block per temporal slice.

The processor writes `<t seconds><|vision_start|>` + H*W video tokens + `<|vision_end|>` for
every slice, so each slice is its own block (1, H, W) of the same media item; the timestamp
text is scaffolding, not context.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tamx.records import VisionBlock

from ..inputs import MediaItem
from .qwen2_vl import Qwen2VLAdapter


class Qwen3VLAdapter(Qwen2VLAdapter):
    family = "qwen3_vl"
    model_types = ("qwen3_vl",)

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        specs = []
        for spec in super().block_specs(media, processed):
            if spec.kind != "video":
                specs.append(spec)
                continue
            t, h, w = spec.grid
            specs.extend(
                replace(spec, grid=(1, h, w), frames=spec.frames[i : i + 1], times=spec.times[i : i + 1])
                for i in range(t)
            )
        return specs
