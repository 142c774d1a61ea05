"""Synthetic samples with a real sequence layout, for tests, benchmarks and the example.

The hidden states are random, so the maps mean nothing; the layout (chat scaffolding,
vision blocks with their placeholders, prompt text, answer) is that of a real VLM sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .dtypes import encode_dtype
from .errors import TamxError
from .records import LMHead, Media, RunInfo, Sample, VisionBlock

TEXT_START = 16  # ids below this are reserved for scaffolding in the synthetic vocabulary


def synthetic_special_tokens(vocab_size: int) -> dict[str, int]:
    """Special-token roles of the synthetic vocabulary (the last ids)."""
    roles = ("image_token", "video_token", "vision_start", "vision_end", "turn_start", "turn_end")
    return {role: vocab_size - 1 - i for i, role in enumerate(roles)}


def synthetic_run_info(vocab_size: int = 1000, dtype: str = "float32") -> RunInfo:
    """Run attributes matching `synthetic_sample` with the same vocabulary size."""
    return RunInfo(model_id="synthetic", dtype=dtype, special_tokens=synthetic_special_tokens(vocab_size))


def _frame_image(rng: np.random.Generator, grid_h: int, grid_w: int, patch: int = 8) -> bytes:
    image = rng.integers(0, 256, size=(grid_h * patch, grid_w * patch, 3), dtype=np.uint8)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise TamxError(f"OpenCV could not encode a {image.shape[1]} x {image.shape[0]} synthetic frame as PNG")
    return data.tobytes()


def _candidate_logprobs(rng: np.random.Generator, steps: int, top_k: int) -> np.ndarray:
    probs = np.sort(rng.dirichlet(np.ones(top_k + 2), size=steps), axis=1)[:, ::-1]
    return np.log(probs[:, :top_k]).astype(np.float32)


def synthetic_sample(
    sample_id: str = "synthetic",
    grids: Sequence[tuple[int, int, int]] = ((1, 12, 16),),
    kinds: Sequence[str] | None = None,
    n_answer: int = 20,
    n_context: int = 12,
    hidden_size: int = 64,
    vocab_size: int = 1000,
    top_k: int = 3,
    dtype: str = "float32",
    bias: bool = False,
    seed: int = 0,
    media: bool = True,
    baselines: bool = False,
) -> Sample:
    """A sample of random hidden states laid out like a chat with images or videos.

    grids: the (T, H, W) of each vision block; kinds: "image" or "video" per block (default:
    "video" where T > 1). Answer and context tokens repeat on purpose (own-class exclusion).
    baselines: also the fields encode records on request (states of layers -2 and -4 at the
    positions explain reads, attention of two layers, rollout and Grad-CAM at layer -2), from a generator of their own.
    """
    rng = np.random.default_rng(seed)
    special = synthetic_special_tokens(vocab_size)
    kinds = list(kinds) if kinds is not None else ["video" if g[0] > 1 else "image" for g in grids]
    text_ids = np.arange(TEXT_START, vocab_size - len(special))
    ids: list[int] = [special["turn_start"], 1]
    blocks, items = [], []
    for index, (grid, kind) in enumerate(zip(grids, kinds)):
        ids.append(special["vision_start"])
        t, h, w = grid
        frames = tuple((2 * i, 2 * i + 1) for i in range(t)) if kind == "video" else ()
        blocks.append(VisionBlock(start=len(ids), grid=(t, h, w), kind=kind, media=index, frames=frames))
        ids.extend([special[f"{kind}_token"]] * (t * h * w))
        ids.append(special["vision_end"])
        if media and kind == "image":
            items.append(Media(item=index, kind="image", mime="image/png", data=_frame_image(rng, h, w)))
        elif media:
            for frame in range(2 * t):
                items.append(
                    Media(item=index, kind="video-frame", mime="image/png", data=_frame_image(rng, h, w), frame=frame)
                )
    vocabulary = rng.choice(text_ids, size=max(4, (n_context + n_answer) // 2), replace=False)
    context_start = len(ids)
    ids.extend(rng.choice(vocabulary, size=n_context).tolist())
    context_positions = np.arange(context_start, len(ids))
    ids.extend([special["turn_end"], special["turn_start"], 2])
    answer_start = len(ids)
    ids.extend(rng.choice(vocabulary, size=n_answer).tolist())
    input_ids = np.array(ids, dtype=np.int64)
    answer_positions = np.arange(answer_start, len(ids))

    hidden = rng.standard_normal((len(ids) - 1, hidden_size)).astype(np.float32)
    candidates = None
    if top_k:
        candidates = np.empty((n_answer, top_k), dtype=np.int64)
        candidates[:, 0] = input_ids[answer_positions]
        for i in range(n_answer):
            others = rng.choice(text_ids, size=top_k * 2, replace=False)
            others = others[others != candidates[i, 0]][: top_k - 1]
            candidates[i, 1:] = others
    sample = Sample(
        id=sample_id,
        hidden=encode_dtype(hidden, dtype),
        hidden_dtype=dtype,
        input_ids=input_ids,
        vision_blocks=tuple(blocks),
        answer_positions=answer_positions,
        context_positions=context_positions,
        lm_head=LMHead(ids=np.zeros(0, np.int64), rows=np.zeros((0, hidden_size), np.float32)),
        candidate_ids=candidates,
        candidate_logprobs=None if candidates is None else _candidate_logprobs(rng, n_answer, top_k),
        candidate_tokens=None if candidates is None else [[f" t{c}" for c in row] for row in candidates.tolist()],
        tokens=[f" t{i}" if i >= TEXT_START else f"<{i}>" for i in ids],
        media=items,
        messages=[{"role": "user", "content": [{"type": "text", "text": "synthetic"}]}],
    )
    needed = sample.needed_token_ids()
    rows = rng.standard_normal((len(needed), hidden_size)).astype(np.float32) / np.sqrt(hidden_size)
    head_bias = rng.standard_normal(len(needed)).astype(np.float32) * 0.1 if bias else None
    sample.lm_head = LMHead(
        ids=needed,
        rows=encode_dtype(rows, dtype),
        dtype=dtype,
        bias=None if head_bias is None else encode_dtype(head_bias, dtype),
    )
    if baselines:
        _add_baselines(sample, np.random.default_rng([seed, 1]), dtype)
    return sample


def _add_baselines(sample: Sample, rng: np.random.Generator, dtype: str) -> None:
    """Random stand-ins for what `tamx encode --layers -1,-2,-4 --attention` records."""
    from .explain import read_positions

    positions = read_positions(sample)
    n, m, v, c = len(sample.answer_positions), len(sample.context_positions), sample.vision_size, sample.hidden.shape[1]
    sample.lens_layers = [-2, -4]
    sample.lens_positions = positions
    sample.lens_hidden = encode_dtype(rng.standard_normal((2, len(positions), c)).astype(np.float32), dtype)
    sample.attention_layers = [-1, -2]
    sample.attention = rng.dirichlet(np.ones(v), size=(2, n)).astype(np.float32) / 2
    sample.attention_prompt = rng.dirichlet(np.ones(v), size=(2, m)).astype(np.float32) / 2
    sample.rollout = rng.dirichlet(np.ones(v), size=n).astype(np.float32) / 2
    sample.rollout_prompt = rng.dirichlet(np.ones(v), size=m).astype(np.float32) / 2
    sample.gradient_layer = -2
    sample.gradient = np.maximum(rng.standard_normal((n, v)), 0).astype(np.float32)
    sample.gradient_prompt = np.maximum(rng.standard_normal((m, v)), 0).astype(np.float32)
