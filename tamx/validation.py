"""Checks of a record beyond its field table: what the table's types and shapes cannot say.

The field tables (tamx.records, read by tamx.fields) check every field's presence, type, dtype
and shape; the checks here add how fields relate (positions inside the sequence, vision blocks
on their placeholder tokens, LM-head rows for every token explain needs) and what the keys of
a vision block or media entry must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .dtypes import STORAGE_DTYPES
from .errors import SampleError
from .fields import check_arrays, check_json
from .names import check_sample_id

if TYPE_CHECKING:
    from .records import Sample, VisionBlock

VISION_KINDS = ("image", "video")
REENCODE = "re-encode or re-import this sample"

MEDIA_KEYS = {"item": int, "kind": str, "mime": str}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check: Callable[[Any], bool], length: int | None = None) -> Callable[[Any], bool]:
    return lambda value: (
        isinstance(value, list) and (length is None or len(value) == length) and all(check(v) for v in value)
    )


# The keys of a vision block's JSON (docs/store.md, "Vision blocks"): what each must hold, so
# that a block read from a file is never coerced ("false" is not true, 1.5 is not media 1).
BLOCK_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "start": (_is_int, "an integer"),
    "grid": (_list_of(_is_int, 3), "[T, H, W] integers"),
    "kind": (lambda v: v in VISION_KINDS, f"one of {VISION_KINDS}"),
    "media": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "frames": (_list_of(_list_of(_is_int)), "a list of lists of frame indices"),
    "unmapped": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "box": (lambda v: v is None or _list_of(_is_number, 4)(v), "null or [x0, y0, x1, y1]"),
    "image_size": (lambda v: v is None or _list_of(_is_int, 2)(v), "null or [width, height] integers"),
    "times": (_list_of(_list_of(_is_number)), "a list of lists of seconds"),
    "label": (lambda v: isinstance(v, str), "a string"),
    "row_newline": (lambda v: isinstance(v, bool), "true or false"),
    "separator": (lambda v: isinstance(v, str), "a string"),
    "tiles": (_list_of(_list_of(_is_int, 4)), "a list of [row0, col0, rows, cols] integers"),
    "tile_boxes": (_list_of(_list_of(_is_number, 4)), "a list of [x0, y0, x1, y1]"),
}


def shown_json(value: Any, limit: int = 60) -> str:
    """A JSON value as messages show it: its repr, cut short when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def block_json_problem(data: dict[str, Any]) -> str | None:
    """Why a vision block's JSON breaks BLOCK_KEYS (the first key at fault), or None."""
    for key, value in data.items():
        rule = BLOCK_KEYS.get(key)
        if rule is not None and not rule[0](value):
            return f"{key} must be {rule[1]}, got {shown_json(value)}"
    return None


def check_media_json(sample_id: str, entries: list[Any]) -> None:
    """Raise SampleError unless every media entry has its item (int), kind and mime (strings),
    and a frame that is an int or null."""
    for index, item in enumerate(entries):
        if (
            not isinstance(item, dict)
            or any(not isinstance(item.get(k), t) for k, t in MEDIA_KEYS.items())
            or isinstance(item["item"], bool)
            or not (item.get("frame") is None or _is_int(item["frame"]))
        ):
            raise SampleError(
                sample_id,
                "media",
                f"entry {index} must be an object with item (int), kind and mime (strings) and frame (int or null), "
                f"got {shown_json(item)}; {REENCODE}",
            )


def _fail(sample: Sample, name: str, problem: str) -> None:
    raise SampleError(sample.id, name, problem)


def _check_positions(sample: Sample, name: str, positions: np.ndarray, limit: int) -> None:
    if len(positions) and (positions.min() < 0 or positions.max() >= limit):
        _fail(sample, name, f"positions must lie in [0, {limit}), got {positions.min()}..{positions.max()}")
    if np.any(np.diff(positions) <= 0):
        _fail(sample, name, "positions must be strictly increasing")


def _placeholder_run(ids: np.ndarray, start: int) -> int:
    """Length of the run of ids equal to ids[start] that begins at `start`."""
    run = ids[start:] == ids[start]
    return len(run) if run.all() else int(np.argmin(run))


def _check_placeholders(sample: Sample, index: int, block: VisionBlock, placeholder: int | None) -> None:
    """A block is a run of one placeholder id (the model's, when the run records it) of
    T*H*W tokens plus the block's unmapped ones."""
    ids = sample.input_ids
    where = f"vision block {index}"
    if placeholder is not None and ids[block.start] != placeholder:
        _fail(
            sample,
            "vision_starts",
            f"{where} starts at a token {ids[block.start]}, not the {block.kind} placeholder {placeholder}",
        )
    held = _placeholder_run(ids, block.start)
    expected = block.tokens + block.unmapped
    followed = any(b.start == block.start + expected for b in sample.vision_blocks)
    if held < expected or (held > expected and not followed):
        unmapped = f" plus {block.tokens - block.size + block.unmapped} separator(s)" if expected > block.size else ""
        _fail(
            sample,
            "vision_grids",
            f"{where}: grid {block.grid} has T*H*W = {block.size} cells{unmapped} but the block holds "
            f"{held} {block.kind} placeholder tokens from position {block.start}",
        )


def _check_blocks(sample: Sample, special_tokens: dict[str, int]) -> None:
    n_states = len(sample.hidden)
    previous_stop = 0
    for index, block in enumerate(sample.vision_blocks):
        where = f"vision block {index}"
        if len(block.grid) != 3 or min(block.grid) < 1:
            _fail(sample, "vision_grids", f"{where}: grid {block.grid} must be 3 positive ints (T, H, W)")
        if block.kind not in VISION_KINDS:
            _fail(sample, "vision_blocks", f"{where}: kind {block.kind!r} is not one of {VISION_KINDS}")
        if block.start < previous_stop:
            _fail(sample, "vision_starts", f"{where} starts at {block.start}, inside the previous block")
        if block.stop > n_states:
            _fail(
                sample,
                "vision_grids",
                f"{where}: grid {block.grid} has {block.size} cells from position {block.start}, "
                f"past the {n_states} hidden states",
            )
        if block.unmapped < 0:
            _fail(sample, "vision_blocks", f"{where}: unmapped = {block.unmapped} must be >= 0")
        _check_placeholders(sample, index, block, special_tokens.get(f"{block.kind}_token"))
        if block.frames and len(block.frames) != block.grid[0]:
            _fail(sample, "vision_blocks", f"{where}: {len(block.frames)} frame lists for T = {block.grid[0]}")
        if block.times and len(block.times) != block.grid[0]:
            _fail(sample, "vision_blocks", f"{where}: {len(block.times)} timestamp lists for T = {block.grid[0]}")
        if block.tiles and (
            len(block.tile_boxes) != len(block.tiles)
            or sum(n * m for _r, _c, n, m in block.tiles) != block.grid[1] * block.grid[2]
        ):
            _fail(
                sample, "vision_blocks", f"{where}: its {len(block.tiles)} tiles do not partition the {block.grid} grid"
            )
        if block.box is not None and (
            len(block.box) != 4 or not block.box[0] < block.box[2] or not block.box[1] < block.box[3]
        ):
            _fail(sample, "vision_blocks", f"{where}: box {block.box} must be (x0, y0, x1, y1) with x0 < x1, y0 < y1")
        previous_stop = block.stop + block.unmapped


def _check_strings(sample: Sample, name: str, value: Any, depth: int) -> None:
    rows = value if depth == 1 else [s for row in value if isinstance(row, list) for s in row]
    if depth == 2 and not all(isinstance(row, list) for row in value):
        _fail(sample, name, "must be a list of lists of strings, [N][K]")
    bad = [s for s in rows if type(s) is not str]
    if bad:
        _fail(sample, name, f"must hold strings, got {type(bad[0]).__name__} {bad[0]!r}; {REENCODE}")


def _check_position_sets(sample: Sample) -> None:
    """Answers and context are disjoint, outside vision blocks, and the answer follows the prompt."""
    answers, context = sample.answer_positions, sample.context_positions
    both = np.intersect1d(answers, context)
    if len(both):
        _fail(sample, "context_positions", f"positions {both[:5].tolist()} are also answer positions; {REENCODE}")
    if len(context) and answers[0] <= context[0]:
        _fail(
            sample,
            "answer_positions",
            f"the first answer position {answers[0]} comes before the prompt (context starts at {context[0]})",
        )
    for index, block in enumerate(sample.vision_blocks):
        for name, positions in (("answer_positions", answers), ("context_positions", context)):
            inside = positions[(positions >= block.start) & (positions < block.stop + block.unmapped)]
            if len(inside):
                _fail(
                    sample,
                    name,
                    f"positions {inside[:5].tolist()} lie inside vision block {index} "
                    f"[{block.start}, {block.stop + block.unmapped}); {REENCODE}",
                )


def validate_sample(sample: Sample, special_tokens: dict[str, int]) -> None:
    """Check every field against SAMPLE_FIELDS (types, dtypes, shapes: the table is the one shape
    check), then positions, grids and LM-head coverage; raise SampleError naming the field on the
    first fault."""
    from .records import SAMPLE_FIELDS, sample_values  # records imports this module

    check_sample_id(sample.id)
    if sample.hidden_dtype not in STORAGE_DTYPES or sample.lm_head.dtype not in STORAGE_DTYPES:
        _fail(sample, "hidden_dtype", f"dtypes must be one of {sorted(STORAGE_DTYPES)}")
    values = sample_values(sample)
    check_json(SAMPLE_FIELDS, values, lambda name, problem: _fail(sample, name, problem), "sample")
    check_arrays(SAMPLE_FIELDS, values, lambda name, problem: _fail(sample, name, problem))
    if sample.tokens is not None:
        _check_strings(sample, "tokens", sample.tokens, 1)
    if sample.candidate_tokens is not None:
        _check_strings(sample, "candidate_tokens", sample.candidate_tokens, 2)
    length = len(sample.input_ids)
    if length < 2:
        _fail(sample, "input_ids", f"must hold at least 2 tokens, got shape {sample.input_ids.shape}")
    _check_positions(sample, "answer_positions", sample.answer_positions, length)
    if len(sample.answer_positions) == 0:
        _fail(sample, "answer_positions", "the sample has no answer token to explain")
    if sample.answer_positions[0] < 1:
        _fail(sample, "answer_positions", "the first answer token needs a position >= 1")
    _check_positions(sample, "context_positions", sample.context_positions, length - 1)
    _check_blocks(sample, special_tokens)
    _check_position_sets(sample)
    n = len(sample.answer_positions)
    if sample.candidate_tokens is not None and (
        sample.candidate_ids is None or [len(r) for r in sample.candidate_tokens] != [sample.candidate_ids.shape[1]] * n
    ):
        _fail(sample, "candidate_tokens", "must hold one string per candidate id, [N][K]")
    if sample.tokens is not None and len(sample.tokens) != length:
        _fail(sample, "tokens", f"has {len(sample.tokens)} strings for {length} input ids")
    check_lm_head_covers(sample, sample.needed_token_ids())
    _check_baselines(sample)


def _check_baselines(sample: Sample) -> None:
    """The recorded baselines agree with the sample: one layer index per stored layer, positions
    inside the hidden states, one attention row per answer (prompt) token and vision cell."""
    n, m, v = len(sample.answer_positions), len(sample.context_positions), sample.vision_size
    for names in (("lens_layers", "lens_hidden"), ("attention_layers", "attention")):
        layers, data = (getattr(sample, name) for name in names)
        if (layers is None) != (data is None):
            _fail(sample, names[0], f"{names[0]} and {names[1]} come together; {REENCODE}")
        if layers is not None and (not all(_is_int(x) and x < 0 for x in layers) or len(layers) != data.shape[0]):
            _fail(sample, names[0], f"must list one negative layer index per row of {names[1]}, got {layers}")
    if sample.lens_hidden is not None:
        if sample.lens_positions is None:
            _fail(sample, "lens_positions", f"is missing beside lens_hidden; {REENCODE}")
        _check_positions(sample, "lens_positions", sample.lens_positions, len(sample.input_ids) - 1)
    shapes = {"attention": (n, v), "attention_prompt": (m, v), "rollout": (n, v), "rollout_prompt": (m, v)}
    shapes.update({"gradient": (n, v), "gradient_prompt": (m, v)})
    for name, shape in shapes.items():
        value = getattr(sample, name)
        if value is not None and value.shape[-2:] != shape:
            _fail(sample, name, f"must end in [{shape[0]}, {shape[1]}] (tokens, vision cells), got {list(value.shape)}")


def check_lm_head_covers(sample: Sample, token_ids: np.ndarray) -> None:
    """Raise SampleError if the sample's LM-head rows lack any of `token_ids`."""
    missing = sample.lm_head.missing(token_ids)
    if len(missing):
        shown = ", ".join(str(t) for t in missing[:10]) + (" ..." if len(missing) > 10 else "")
        _fail(sample, "lm_head_rows", f"no LM-head row for {len(missing)} token id(s) explain needs: {shown}")


# The fields of a Maps record (all float32; N answer, M context, K candidates, V vision cells).
