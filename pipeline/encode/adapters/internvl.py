"""InternVL (the transformers-native InternVL3 classes): the base grid of one tile per image.

Dynamic tiling is switched off (`crop_to_patches=False`): every image is one tile, whose
patches are pixel-shuffled by `downsample_ratio` into a (1, side, side) grid. Mapping the
tiles of a tiled image back onto the image is not supported. A video gives one block per
frame (`FrameN: <img>...</img>`), each covering that sampled frame.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..inputs import MediaItem
from .base import Adapter, BlockSpec


class InternVLAdapter(Adapter):
    family = "internvl"
    model_types = ("internvl",)
    token_roles: ClassVar[dict[str, str]] = {
        "vision_start": "<img>",
        "vision_end": "</img>",
        "turn_start": "<|im_start|>",
        "turn_end": "<|im_end|>",
    }

    def special_tokens(self) -> dict[str, int]:
        roles = super().special_tokens()
        # InternVL videos reuse the image context token per frame: there is no separate video placeholder
        roles.pop("video_token", None)
        return roles

    def processor_kwargs(self, media: list[MediaItem]) -> dict[str, Any]:
        return {**super().processor_kwargs(media), "crop_to_patches": False}

    def _side(self, processed: dict[str, Any]) -> int:
        patch = self.config.vision_config.patch_size
        patch = patch[0] if isinstance(patch, (list, tuple)) else patch
        height = int(processed["pixel_values"].shape[-2])
        return int(height // int(patch) * self.config.downsample_ratio)

    def placeholder_ids(self) -> dict[str, int]:
        image = self.special_tokens()["image_token"]
        return {"image": image, "video": image}

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[BlockSpec]:
        side = self._side(processed)
        specs = []
        for index, item in enumerate(media):
            if item.kind == "image":
                specs.append(BlockSpec("image", (1, side, side), index))
            else:
                specs.extend(BlockSpec("video", (1, side, side), index, ((f,),)) for f in item.frame_indices)
        return specs
