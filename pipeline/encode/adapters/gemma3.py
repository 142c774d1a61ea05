"""Gemma 3: a fixed grid per image, the vision tower's patches average-pooled to tokens_per_side^2.

The grid side is the model's own `multi_modal_projector.tokens_per_side` (from
mm_tokens_per_image). Pan-and-scan crops are not mapped back to the image: encode refuses them.
"""

from __future__ import annotations

from typing import Any

from ..inputs import MediaItem
from .base import Adapter, AdapterError, BlockSpec


class Gemma3Adapter(Adapter):
    family = "gemma3"
    model_types = ("gemma3",)
    token_roles = {"turn_start": "<start_of_turn>", "turn_end": "<end_of_turn>"}  # noqa: RUF012

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[BlockSpec]:
        if any(m.kind == "video" for m in media):
            raise AdapterError("Gemma 3 takes images only; give the video's frames as images")
        crops = processed.get("num_crops")
        if crops is not None and int(sum(int(c) for c in crops.reshape(-1).tolist())) > 0:
            raise AdapterError("Gemma 3 pan-and-scan crops are not supported; call with do_pan_and_scan=False")
        side = int(self.model.model.multi_modal_projector.tokens_per_side)
        return [BlockSpec("image", (1, side, side), index) for index in range(len(media))]
