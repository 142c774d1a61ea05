"""LLaVA-1.5: one fixed patch grid per image (the vision tower's patches; CLS dropped)."""

from __future__ import annotations

from typing import Any

from ..inputs import MediaItem
from .base import Adapter, AdapterError, BlockSpec


class LlavaAdapter(Adapter):
    family = "llava"
    model_types = ("llava",)

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[BlockSpec]:
        if any(m.kind == "video" for m in media):
            raise AdapterError("LLaVA-1.5 takes images only; use a video model (Qwen2-VL, LLaVA-OneVision) for video")
        strategy = getattr(self.config, "vision_feature_select_strategy", "default")
        if strategy != "default":
            raise AdapterError(
                f"vision_feature_select_strategy={strategy!r} keeps the CLS token, which has no place in a patch "
                "grid; the llava adapter supports 'default' only"
            )
        patch = int(self.config.vision_config.patch_size)
        height, width = (int(x) for x in processed["pixel_values"].shape[-2:])
        grid = (1, height // patch, width // patch)
        return [BlockSpec("image", grid, index) for index in range(len(media))]
