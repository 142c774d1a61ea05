"""LLaVA-1.5: one fixed patch grid per image (the vision tower's patches; CLS dropped).

The grid covers the processor's output canvas: the image padded to a square where the
processor expands to square (`do_pad`, the original LLaVA `pad`), resized (shortest edge),
then centre-cropped (`do_center_crop`, as the llava-hf checkpoints do). Its box is that
canvas in source pixels: only the middle of a wide image, or past the image on padding.
"""

from __future__ import annotations

from typing import Any

from tamx.records import VisionBlock

from ..inputs import MediaItem
from .base import Adapter, AdapterError, on_canvas, unplaced


class LlavaAdapter(Adapter):
    family = "llava"
    model_types = ("llava",)

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
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
        specs = []
        for index, item in enumerate(media):
            canvas = self.clip_canvas(item)
            if (round(canvas.width), round(canvas.height)) != (width, height):
                raise AdapterError(
                    f"the {type(self.image_processor()).__name__} output is {width}x{height} px but its configuration "
                    f"describes {canvas.width:g}x{canvas.height:g} px; tamx cannot place this grid on the image"
                )
            # the patch convolution drops a remainder of fewer than `patch` pixels at the right and bottom
            canvas = canvas.crop(0, 0, grid[2] * patch, grid[1] * patch)
            specs.append(on_canvas(unplaced("image", grid, index), canvas, item))
        return specs
