"""Baseline maps from what encode recorded on request (docs/method.md, "Baseline methods"):
head-mean attention to the vision cells (averaged over the recorded layers), attention
rollout (Abnar and Zuidema 2020) and Grad-CAM for a decoder at one layer. Each is a map per
answer token (and per prompt token) that the variant's filter may smooth (default none); the
ECI mode does not apply.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .filters import filter_maps
from .layout import frame_table, media_groups
from .records import Maps, Sample


def stored_maps(sample: Sample, settings, answer: np.ndarray, prompt: np.ndarray | None) -> Maps:
    """Maps of one baseline from its raw answer maps [N, V] (and prompt maps [M, V], or None):
    cam and eci hold the raw map, final the filtered one; no text relevance (zeros), no candidates."""
    n, m = len(sample.answer_positions), len(sample.context_positions)
    frames = frame_table(sample.vision_blocks)
    groups = media_groups(sample.vision_blocks)
    raw = np.maximum(np.nan_to_num(np.asarray(answer, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    final = np.maximum(filter_maps(raw, frames, settings.filter, settings.kernel_size), 0.0)
    maps = Maps(
        variant=settings.variant_name(),
        settings=settings.to_json(),
        cam=raw,
        eci=raw.copy(),
        final=final,
        scale=np.zeros((n, int(groups.max()) + 1 if len(groups) else 0), dtype=np.float32),
        text_relevance=np.zeros((n, m), dtype=np.float32),
        answer_relevance=np.zeros((n, n), dtype=np.float32),
    )
    if settings.prompt and prompt is not None:
        prompt = np.maximum(np.nan_to_num(np.asarray(prompt, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0)
        maps.prompt_maps = np.maximum(filter_maps(prompt, frames, settings.filter, settings.kernel_size), 0.0)
        maps.prompt_relevance = np.zeros((m, m), dtype=np.float32)
    return maps


def attention_maps(sample: Sample, settings) -> Maps:
    """Head-mean attention from the position that predicts each token to every vision cell,
    averaged over the recorded layers (`tamx encode --attention`)."""
    prompt = None if sample.attention_prompt is None else sample.attention_prompt.mean(axis=0)
    return stored_maps(sample, settings, sample.attention.mean(axis=0), prompt)


def rollout_maps(sample: Sample, settings) -> Maps:
    """Attention rollout's row of each token over the vision cells (`tamx encode --attention`)."""
    return stored_maps(sample, settings, sample.rollout, sample.rollout_prompt)


def gradient_maps(sample: Sample, settings) -> Maps:
    """Grad-CAM at the recorded layer (`tamx encode --gradients LAYER`); the settings name it."""
    settings = replace(settings, layer=sample.gradient_layer if sample.gradient_layer is not None else settings.layer)
    return stored_maps(sample, settings, sample.gradient, sample.gradient_prompt)
