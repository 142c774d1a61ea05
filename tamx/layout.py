"""Where things sit in a sample's token sequence: vision cells, frames, the context pool."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .records import VisionBlock


def vision_positions(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """Sequence positions of every vision cell, blocks concatenated in order: [V] int64."""
    if not blocks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(b.start, b.stop, dtype=np.int64) for b in blocks])


def cell_block_starts(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """For every vision cell, the start position of its block: [V] int64."""
    if not blocks:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.full(b.size, b.start, dtype=np.int64) for b in blocks])


def frame_table(blocks: Sequence[VisionBlock]) -> np.ndarray:
    """One row (offset into the map, H, W) per image or temporal slice of a video: [F, 3]."""
    rows = []
    offset = 0
    for block in blocks:
        t, h, w = block.grid
        for _ in range(t):
            rows.append((offset, h, w))
            offset += h * w
    return np.array(rows, dtype=np.int64).reshape(-1, 3)


def context_pool(context_positions: np.ndarray, answer_positions: np.ndarray) -> np.ndarray:
    """Positions that can be context for some token: the prompt text and every answer token
    but the last (whose hidden state may not exist). Sorted, unique: [Q] int64."""
    return np.union1d(context_positions, answer_positions[:-1]).astype(np.int64)
