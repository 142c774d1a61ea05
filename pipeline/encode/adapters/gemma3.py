"""Gemma 3: a fixed grid per image, the vision tower's patches average-pooled to tokens_per_side^2.

The grid side is sqrt(mm_tokens_per_image) (the projector's tokens_per_side). The processor
squashes every image to its square size, so the grid covers the whole image. With pan and scan
(`do_pan_and_scan` in the image processor's configuration, passed on to the processor call),
the processor adds crops after the whole image, each its own
`<start_of_image>` run and squashed the same way: each crop is a block of the same media item,
its box taken from the image processor's own `pan_and_scan` run on a map of pixel coordinates.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from tamx.geometry import Canvas
from tamx.records import VisionBlock

from ..inputs import MediaItem
from .base import Adapter, AdapterError, item_size, on_canvas, unplaced

PAN_AND_SCAN = ("pan_and_scan_min_crop_size", "pan_and_scan_max_num_crops", "pan_and_scan_min_ratio_to_activate")


class Gemma3Adapter(Adapter):
    family = "gemma3"
    model_types = ("gemma3",)
    token_roles = {"turn_start": "<start_of_turn>", "turn_end": "<end_of_turn>"}  # noqa: RUF012

    def _side(self) -> int:
        tokens = int(self.config.mm_tokens_per_image)
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise AdapterError(f"mm_tokens_per_image = {tokens} is not a square; tamx cannot lay it out as a grid")
        return side

    def _pan_and_scan_settings(self) -> dict[str, Any]:
        """The pan-and-scan settings: the image processor's configuration, else the processor's defaults."""
        ip = self.image_processor()
        defaults = getattr(self.processor, "images_kwargs", None) or {}
        settings = {}
        for name in PAN_AND_SCAN:
            value = getattr(ip, name, None)
            settings[name] = defaults.get(name) if value is None else value
        if any(v is None for v in settings.values()) or not hasattr(ip, "pan_and_scan"):
            raise AdapterError(f"{type(ip).__name__} does not say how it pans and scans; tamx cannot place its crops")
        return settings

    def processor_kwargs(self, media: list[MediaItem]) -> dict[str, Any]:
        # the processor's class defaults (do_pan_and_scan False) win over the image processor's own
        # configuration: pass a checkpoint's pan-and-scan setting on explicitly, with the settings
        # the crop boxes are computed from
        if getattr(self.image_processor(), "do_pan_and_scan", None):
            return {**super().processor_kwargs(media), "do_pan_and_scan": True, **self._pan_and_scan_settings()}
        return super().processor_kwargs(media)

    def _crop_boxes(self, item: MediaItem) -> list[tuple[float, float, float, float]]:
        """Source-pixel boxes of the processor's pan-and-scan crops of `item` (its own code, run on x/y maps)."""
        ip = self.image_processor()
        settings = self._pan_and_scan_settings()
        width, height = item_size(item)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.int32)
        crops = ip.pan_and_scan(np.stack([xs, ys]), **settings)
        return [(float(c[0].min()), float(c[1].min()), float(c[0].max() + 1), float(c[1].max() + 1)) for c in crops]

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        if any(m.kind == "video" for m in media):
            raise AdapterError("Gemma 3 takes images only; give the video's frames as images")
        # the processor does not return num_crops: any images beyond one per item are pan-and-scan crops
        views = int(processed["pixel_values"].shape[0])
        crops = [self._crop_boxes(item) for item in media] if views != len(media) else [[] for _ in media]
        if views != len(media) + sum(len(c) for c in crops):
            raise AdapterError(
                f"the processor made {views} views of {len(media)} image(s), which its pan-and-scan settings do not "
                "explain; tamx cannot place them (call with do_pan_and_scan=False)"
            )
        side = self._side()
        specs = []
        for index, (item, boxes) in enumerate(zip(media, crops)):
            width, height = item_size(item)
            whole = on_canvas(unplaced("image", (1, side, side), index), Canvas.source(width, height), item)
            specs.append(replace(whole, label="whole image" if boxes else ""))
            for number, box in enumerate(boxes, start=1):
                specs.append(replace(whole, box=box, label=f"crop {number}"))
        return specs
