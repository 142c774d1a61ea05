"""What every model family adapter tells encode: special tokens, the final norm, the vision blocks.

An adapter never hard-codes token ids: roles come from the model's config and tokenizer.
Grids come from the processor's `image_grid_thw` / `video_grid_thw` or from the family's
fixed patch grid, and every grid is checked against the placeholder run it describes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tamx.errors import TamxError
from tamx.geometry import Canvas
from tamx.records import VisionBlock

from ..inputs import MediaItem

if TYPE_CHECKING:  # the adapters themselves load without torch
    from torch import nn


class AdapterError(TamxError):
    """The model or its inputs do not match what the family adapter expects."""


def unplaced(
    kind: str, grid: tuple[int, int, int], media: int, frames: tuple[tuple[int, ...], ...] = (), **fields: Any
) -> VisionBlock:
    """An expected vision block before `Adapter.find_blocks` places it in the sequence (start 0
    until then): kind, grid (T, H, W) in merged patches, media index, frames per slice, and any
    other `VisionBlock` field."""
    return VisionBlock(start=0, grid=grid, kind=kind, media=media, frames=frames, **fields)


def tokens_taken(block: VisionBlock) -> int:
    """Placeholder tokens a block takes: the grid (with its row newlines) plus trailing separators."""
    return block.tokens + block.unmapped


def _crop_start(size: float, crop: int) -> int:
    """transformers' center_crop: the window starts at floor((size - crop) / 2); where the crop is
    larger it pads floor((crop - size) / 2) pixels before the image."""
    size = int(size)
    return (size - crop) // 2 if size >= crop else -((crop - size) // 2)


def item_size(item: MediaItem) -> tuple[int, int]:
    """(width, height) of an image or of a video's frames in pixels."""
    shape = item.pixels.shape
    return (int(shape[2]), int(shape[1])) if item.kind == "video" else (int(shape[1]), int(shape[0]))


def on_canvas(spec: VisionBlock, canvas: Canvas, item: MediaItem, label: str = "") -> VisionBlock:
    """`spec` with the geometry of a grid that exactly covers `canvas`."""
    box = tuple(float(x) for x in canvas.box)
    return replace(spec, box=box, image_size=item_size(item), label=label or spec.label)


def slice_times(item: MediaItem, frames: tuple[tuple[int, ...], ...]) -> tuple[tuple[float, ...], ...]:
    """Timestamps in seconds of every source frame of every slice (empty when the fps is unknown)."""
    if not item.fps:
        return ()
    return tuple(tuple(round(f / item.fps, 6) for f in chunk) for chunk in frames)


class Adapter:
    """Base adapter. Subclasses set `family` and `model_types` and override what differs."""

    family: ClassVar[str] = ""
    model_types: ClassVar[tuple[str, ...]] = ()
    # tokenizer strings resolved (if present in the vocabulary) to extra roles
    token_roles: ClassVar[dict[str, str]] = {}

    def __init__(self, model: nn.Module, processor: Any) -> None:
        self.model = model
        self.processor = processor
        self.config = model.config
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self._special_tokens: dict[str, int] | None = None
        self._special_ids: frozenset[int] | None = None

    # ------------------------------------------------------------ tokens
    def config_token(self, *names: str) -> int | None:
        """The first of `names` set on the model config (or its text config)."""
        for source in (self.config, getattr(self.config, "text_config", None)):
            for name in names:
                value = getattr(source, name, None) if source is not None else None
                if value is not None:
                    return int(value)
        return None

    def tokenizer_token(self, text: str) -> int | None:
        """The id of a token string if the tokenizer knows it as one token."""
        token_id = self.tokenizer.convert_tokens_to_ids(text)
        if token_id is None or (token_id == self.tokenizer.unk_token_id and text != self.tokenizer.unk_token):
            return None
        return int(token_id)

    def special_tokens(self) -> dict[str, int]:
        """Role -> token id: image_token, video_token, vision_start, vision_end and turn markers
        (resolved once per adapter, by `resolve_special_tokens`)."""
        if self._special_tokens is None:
            self._special_tokens = self.resolve_special_tokens()
        return dict(self._special_tokens)

    def special_ids(self) -> frozenset[int]:
        """Every token id that is never prompt context: the roles' ids and the tokenizer's special ids."""
        if self._special_ids is None:
            self._special_ids = frozenset(self.special_tokens().values()) | {
                int(t) for t in self.tokenizer.all_special_ids
            }
        return self._special_ids

    def resolve_special_tokens(self) -> dict[str, int]:
        """The roles from the model config, the tokenizer strings of `token_roles`, and the
        tokenizer's bos / eos / pad; a family overrides this where its roles differ."""
        roles = {
            "image_token": self.config_token("image_token_id", "image_token_index"),
            "video_token": self.config_token("video_token_id", "video_token_index"),
            "vision_start": self.config_token("vision_start_token_id", "boi_token_id", "boi_token_index"),
            "vision_end": self.config_token("vision_end_token_id", "eoi_token_id", "eoi_token_index"),
        }
        for role, text in self.token_roles.items():
            roles.setdefault(role, None)
            if roles[role] is None:
                roles[role] = self.tokenizer_token(text)
        for name in ("bos", "eos", "pad"):
            token_id = getattr(self.tokenizer, f"{name}_token_id", None)
            if token_id is not None:
                roles.setdefault(f"{name}_token", int(token_id))
        return {role: token_id for role, token_id in roles.items() if token_id is not None}

    # ------------------------------------------------------------ model parts
    def language_model(self) -> nn.Module:
        inner = getattr(self.model, "model", None)
        language_model = getattr(inner, "language_model", None)
        if language_model is None:
            raise AdapterError(
                f"{type(self.model).__name__} has no .model.language_model; the {self.family} adapter needs one"
            )
        return language_model

    def final_norm(self) -> nn.Module:
        """The module whose output the LM head multiplies."""
        norm = getattr(self.language_model(), "norm", None)
        if norm is None:
            raise AdapterError(f"the language model of {type(self.model).__name__} has no final .norm to hook")
        return norm

    def logit_softcap(self) -> float | None:
        """Gemma-style soft-capping of the final logits (None: plain logits)."""
        text_config = getattr(self.config, "text_config", self.config)
        cap = getattr(text_config, "final_logit_softcapping", None)
        return float(cap) if cap else None

    # ------------------------------------------------------------ inputs
    def frame_multiple(self) -> int:
        """Sampled video frames are rounded up to a multiple of this (the temporal patch size)."""
        return 1

    def processor_kwargs(self, media: list[MediaItem]) -> dict[str, Any]:
        """Extra keyword arguments of the processor call (frames are already sampled)."""
        videos = [m for m in media if m.kind == "video"]
        if not videos:
            return {}
        from transformers.video_utils import VideoMetadata

        metadata = [
            VideoMetadata(
                total_num_frames=m.source_frames or len(m.frame_indices),
                fps=m.fps,
                height=int(m.pixels.shape[1]),
                width=int(m.pixels.shape[2]),
                frames_indices=list(m.frame_indices),
            )
            for m in videos
        ]
        return {"do_sample_frames": False, "video_metadata": metadata}

    def processor_images(self, media: list[MediaItem], per_prompt: list[list[MediaItem]] | None) -> Any:
        """The `images` argument of the processor call for prompts whose media are `per_prompt`:
        nested per prompt where every prompt has images, as `apply_chat_template(tokenize=True)`
        passes them (LLaVA-OneVision's multi-image layout and Gemma 3's batching depend on it),
        else flat; None without images."""
        images = [m.pixels for m in media if m.kind == "image"]
        if per_prompt is not None:
            nested = [[m.pixels for m in items if m.kind == "image"] for items in per_prompt]
            if all(nested):
                return nested
        return images or None

    # processor outputs that hold one value per token, with the value a text token takes
    per_token_inputs: ClassVar[dict[str, int]] = {"attention_mask": 1, "token_type_ids": 0, "mm_token_type_ids": 0}

    def extend_inputs(self, inputs: dict[str, Any], extra: Any) -> dict[str, Any]:
        """`inputs` with the text tokens `extra` ([1, n] ids) appended: input_ids and every
        per-token input (`per_token_inputs`) grow by n."""
        import torch

        grown = dict(inputs)
        grown["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
        for key, value in self.per_token_inputs.items():
            if key in inputs:
                fill = torch.full_like(extra, value, dtype=inputs[key].dtype)
                grown[key] = torch.cat([inputs[key], fill], dim=1)
        return grown

    def model_inputs(self, processed: dict[str, Any]) -> dict[str, Any]:
        """The processor outputs the model's forward and generate take."""
        drop = {"offset_mapping", "text_replacement_offsets"}
        return {k: v for k, v in processed.items() if k not in drop}

    def block_specs(self, media: list[MediaItem], processed: dict[str, Any]) -> list[VisionBlock]:
        """The vision blocks in sequence order; subclasses implement this."""
        raise NotImplementedError(f"the {self.family} adapter does not define block_specs")

    # ------------------------------------------------------------ geometry
    def image_processor(self) -> Any:
        processor = getattr(self.processor, "image_processor", None)
        if processor is None:
            raise AdapterError(f"the {self.family} processor has no image_processor to read the geometry from")
        return processor

    def clip_canvas(self, item: MediaItem) -> Canvas:
        """The canvas a CLIP-style image processor makes of `item`, from its configuration:
        optional pad to a square (LLaVA's expand-to-square), resize, optional centre crop.
        Refuses steps it cannot place (batch padding to a fixed size)."""
        from transformers.image_transforms import get_resize_output_image_size

        ip = self.image_processor()
        width, height = item_size(item)
        canvas = Canvas.source(width, height)
        if getattr(ip, "do_pad", False):
            if not hasattr(ip, "pad_to_square"):
                raise AdapterError(
                    f"{type(ip).__name__} pads images to a batch size (do_pad=True); tamx cannot place that padding "
                    "on the image: load the processor with do_pad=False"
                )
            side = max(width, height)
            left, top = (side - width) // 2, (side - height) // 2
            canvas = canvas.pad(left, top, side - width - left, side - height - top)
        if getattr(ip, "do_resize", True):
            size = ip.size
            size = size if isinstance(size, dict) else size.__dict__
            square_in = (int(canvas.height), int(canvas.width), 3)
            if size.get("height") and size.get("width"):
                new_h, new_w = int(size["height"]), int(size["width"])
            elif size.get("shortest_edge") and not size.get("longest_edge"):
                new_h, new_w = get_resize_output_image_size(
                    np.zeros(square_in, np.uint8), size["shortest_edge"], default_to_square=False,
                    input_data_format="channels_last",
                )  # fmt: skip
            else:
                raise AdapterError(f"{type(ip).__name__} resizes by {size}; tamx cannot place that resize")
            canvas = canvas.resize(new_w, new_h)
        if getattr(ip, "do_center_crop", False):
            crop = ip.crop_size
            crop = crop if isinstance(crop, dict) else crop.__dict__
            crop_h, crop_w = int(crop["height"]), int(crop["width"])
            canvas = canvas.crop(_crop_start(canvas.width, crop_w), _crop_start(canvas.height, crop_h), crop_w, crop_h)
        return canvas

    # ------------------------------------------------------------ shared helpers
    @staticmethod
    def video_slices(item: MediaItem, temporal: int, count: int) -> tuple[tuple[int, ...], ...]:
        """Source frame indices of each of `count` temporal slices of `temporal` sampled frames."""
        frames = list(item.frame_indices)
        slices = []
        for t in range(count):
            chunk = frames[t * temporal : (t + 1) * temporal] or frames[-1:]
            slices.append(tuple(dict.fromkeys(chunk)))
        return tuple(slices)

    def placeholder_ids(self) -> dict[str, int]:
        roles = self.special_tokens()
        return {kind: roles[f"{kind}_token"] for kind in ("image", "video") if f"{kind}_token" in roles}

    def find_blocks(self, input_ids: np.ndarray, specs: list[VisionBlock]) -> list[VisionBlock]:
        """Match the expected blocks (`block_specs`) to the placeholder runs of `input_ids`; returns
        them placed (their `start` set)."""
        placeholders = self.placeholder_ids()
        runs = []
        index = 0
        while index < len(input_ids):
            token = int(input_ids[index])
            kind = next((k for k, v in placeholders.items() if v == token), None)
            if kind is None:
                index += 1
                continue
            stop = index
            while stop < len(input_ids) and input_ids[stop] == token:
                stop += 1
            runs.append((index, stop - index, kind))
            index = stop
        # several blocks may sit back to back in one run (e.g. a video's slices); split runs by the specs
        matched: list[VisionBlock] = []
        queue = list(specs)
        for start, length, kind in runs:
            offset = 0
            while offset < length:
                if not queue:
                    raise AdapterError(
                        f"the {self.family} adapter found more {kind} placeholder tokens than the processor's "
                        f"grids account for (at position {start + offset})"
                    )
                spec = queue.pop(0)
                if spec.kind != kind or offset + tokens_taken(spec) > length:
                    raise AdapterError(
                        f"the {self.family} adapter expected a {spec.kind} block of grid {spec.grid} "
                        f"({tokens_taken(spec)} tokens) at position {start + offset}, but found a run of "
                        f"{length - offset} {kind} placeholder tokens"
                    )
                matched.append(replace(spec, start=start + offset))
                offset += tokens_taken(spec)
        if queue:
            raise AdapterError(
                f"the {self.family} adapter expected {len(queue)} more vision block(s) than the sequence holds"
            )
        return matched
