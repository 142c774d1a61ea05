"""The records of a run: one dataclass per thing the store holds, and its field table.

The table is the one description of a record's stored fields (tamx.fields): the store and the
interchange read, write and check a record through it, and the conversions to and from stored
values are derived from the dataclass and the table (`record_values`, `record_arguments`).
Checks beyond the table live in tamx.validation, the rule for ids and variant names in
tamx.names; both are re-exported here.

Positions index the model's token sequence `input_ids[0..L)`. `hidden[p]` is the last-layer
hidden state at position p (after the final norm), which predicts `input_ids[p + 1]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import STORAGE_DTYPES, check_dtype_name, to_float32
from .errors import FieldError, SampleError, StoreError
from .fields import (
    SCHEMA,
    array,
    check_arrays,
    check_json,
    from_json,
    json_field,
    json_value,
    record_arguments,
    record_values,
)
from .names import ID_MAX_LENGTH, ID_RULE, check_name, check_sample_id, is_sample_id, name_problem
from .validation import (
    BLOCK_KEYS,
    REENCODE,
    block_json_problem,
    check_lm_head_covers,
    check_media_json,
    validate_sample,
)

__all__ = [  # the names other modules import from here, some defined in tamx.names and tamx.validation
    "BLOCK_KEYS",
    "ID_MAX_LENGTH",
    "ID_RULE",
    "MAPS_ARRAYS",
    "MAPS_FIELDS",
    "REENCODE",
    "RUN_FIELDS",
    "SAMPLE_FIELDS",
    "SCHEMA_VERSION",
    "LMHead",
    "Maps",
    "Media",
    "RunInfo",
    "Sample",
    "VisionBlock",
    "block_json_problem",
    "check_lm_head_covers",
    "check_media_json",
    "check_name",
    "check_sample_id",
    "is_sample_id",
    "maps_attribute",
    "media_json",
    "name_problem",
    "sample_dims",
    "sample_from_values",
    "sample_values",
    "validate_sample",
]

SCHEMA_VERSION = SCHEMA[0]


@dataclass(frozen=True)
class VisionBlock:
    """One grid of vision placeholder tokens, row-major over its (T, H, W) cells.

    A block is one grid: a whole image, one tile or crop of an image, the thumbnail, or a
    video (or one temporal slice of it). Several blocks share `media` when they show the same
    item (tiles of one image, Qwen3-VL's timestamped video slices); they may sit back to back
    in one placeholder run. `media` is the index of the image or video in the sample's
    messages (in order of appearance, counted per kind); `frames[t]` lists the source video
    frames that temporal slice t covers and `times[t]` their timestamps in seconds.
    `box` is (x0, y0, x1, y1), the outer edges of the grid in source pixels of its image or
    frame (past the image where the processor padded); None: not recorded (schema 1), and
    the grid is assumed to cover the whole image. `image_size` is (width, height) of that
    source image or frame in pixels (None: not recorded).
    `row_newline`: every grid row is followed by one separator token (LLaVA-OneVision's
    `image_newline`), which carries no image content; the cells skip it.
    `unmapped` counts separator tokens of the same item right after the grid (named by
    `separator`, e.g. "image_newline"); they are neither vision cells nor context.
    `label` is a short name for people ("tile 1,2", "thumbnail", "crop 1", "base").
    `tiles`: where one token grid is stitched from several tiles (LLaVA-OneVision's anyres
    grid), each tile's part of the grid as (row0, col0, rows, cols), with its own box in
    `tile_boxes`; the block's cells are then ordered tile by tile (row-major inside each),
    so every tile is a contiguous grid of the map.
    """

    start: int
    grid: tuple[int, int, int]
    kind: str = "image"
    media: int = 0
    frames: tuple[tuple[int, ...], ...] = ()
    unmapped: int = 0
    box: tuple[float, float, float, float] | None = None
    image_size: tuple[int, int] | None = None
    times: tuple[tuple[float, ...], ...] = ()
    label: str = ""
    row_newline: bool = False
    separator: str = ""
    tiles: tuple[tuple[int, int, int, int], ...] = ()
    tile_boxes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def size(self) -> int:
        """Number of cells (merged patches) in the block: T * H * W."""
        t, h, w = self.grid
        return t * h * w

    @property
    def tokens(self) -> int:
        """Placeholder tokens the grid spans: its cells plus one newline per row where `row_newline`."""
        t, h, _w = self.grid
        return self.size + (t * h if self.row_newline else 0)

    @property
    def stop(self) -> int:
        """One past the last token of the grid (trailing `unmapped` separators not included)."""
        return self.start + self.tokens

    def positions(self) -> np.ndarray:
        """Sequence positions of the block's cells in map order (row-major; tile by tile where
        `tiles`): [T*H*W] int64."""
        if not self.row_newline and not self.tiles:
            return np.arange(self.start, self.stop, dtype=np.int64)
        t, h, w = self.grid
        stride = w + 1 if self.row_newline else w
        grid = self.start + np.arange(t * h, dtype=np.int64)[:, None] * stride + np.arange(w, dtype=np.int64)[None, :]
        if not self.tiles:
            return grid.ravel()
        grid = grid.reshape(t, h, w)
        return np.concatenate(
            [grid[:, r : r + n, c : c + m].reshape(t, -1) for r, c, n, m in self.tiles], axis=1
        ).ravel()

    def to_json(self) -> dict[str, Any]:
        """The block as stored: an object of its attributes (docs/store.md, "Vision blocks")."""
        return json_value(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VisionBlock:
        """A block from its stored object, each key converted to its attribute's type."""
        if not isinstance(data, dict):
            raise TypeError(f"a vision block is an object, not {type(data).__name__}")
        return from_json(cls, data)


@dataclass(frozen=True)
class Media:
    """One encoded image or video frame (JPEG or PNG bytes) of a sample's inputs."""

    item: int
    kind: str
    mime: str
    data: bytes = field(metadata={"json": False})  # stored as the array media.<i>, not in the JSON
    frame: int | None = None

    def __repr__(self) -> str:
        frame = "" if self.frame is None else f", frame {self.frame}"
        return f"Media(item {self.item}, {self.kind}{frame}, {self.mime}, {len(self.data)} bytes)"


@dataclass
class LMHead:
    """LM-head rows (and bias) for a set of token ids, in the model's stored dtype.

    ids: [U] int64 ascending; rows: [U, C]; bias: [U] or None.
    """

    ids: np.ndarray
    rows: np.ndarray
    dtype: str = "float32"
    bias: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int64)
        order = np.argsort(self.ids, kind="stable")
        if not np.all(order == np.arange(len(order))):
            self.ids = self.ids[order]
            self.rows = np.asarray(self.rows)[order]
            if self.bias is not None:
                self.bias = np.asarray(self.bias)[order]
        if len(self.ids) and np.any(np.diff(self.ids) == 0):
            repeated = np.unique(self.ids[1:][np.diff(self.ids) == 0])
            shown = ", ".join(str(t) for t in repeated[:10].tolist()) + (" ..." if len(repeated) > 10 else "")
            raise FieldError("lm_head_ids", f"LM-head ids must be unique; repeated: {shown}; keep one row per token id")

    def __repr__(self) -> str:
        bias = ", bias" if self.bias is not None else ""
        return (
            f"LMHead({len(self.ids)} rows x {self.rows.shape[-1] if self.rows.ndim == 2 else '?'}, {self.dtype}{bias})"
        )

    def missing(self, token_ids: np.ndarray) -> np.ndarray:
        """The token ids among `token_ids` that have no row here (unique, ascending)."""
        wanted = np.unique(np.asarray(token_ids, dtype=np.int64))
        return wanted[~np.isin(wanted, self.ids)]

    def weights(self, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows [n, C] float32 and bias [n] float32 (or None) for `token_ids`, in that order."""
        index = np.searchsorted(self.ids, token_ids)
        rows = to_float32(self.rows[index], self.dtype)
        bias = None if self.bias is None else to_float32(self.bias[index], self.dtype)
        return rows, bias

    def subset(self, token_ids: np.ndarray) -> LMHead:
        """The rows of the given ids (all must be present)."""
        ids = np.unique(np.asarray(token_ids, dtype=np.int64))
        index = np.searchsorted(self.ids, ids)
        bias = None if self.bias is None else self.bias[index]
        return LMHead(ids=ids, rows=self.rows[index], dtype=self.dtype, bias=bias)


@dataclass
class RunInfo:
    """Run-wide attributes: which model produced the hidden states and its special tokens.

    special_tokens maps a role (image_token, video_token, vision_start, vision_end, ...) to
    its token id, as resolved from the model's tokenizer and config.
    """

    model_id: str = "unknown"
    model_revision: str | None = None
    dtype: str = "float32"
    special_tokens: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_dtype_name(self.dtype)

    def __repr__(self) -> str:
        revision = f"@{self.model_revision}" if self.model_revision else ""
        return f"RunInfo({self.model_id!r}{revision}, {self.dtype}, {len(self.special_tokens)} special tokens)"

    def to_json(self) -> dict[str, Any]:
        return record_values(self, RUN_FIELDS)

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = "the run attributes") -> RunInfo:
        """Read run attributes, checked against RUN_FIELDS (StoreError naming `where` and the field)."""

        def fail(name: str, problem: str) -> None:
            raise StoreError(f"{where}: field {name!r} {problem}; re-create the run or restore its run attributes")

        if not isinstance(data, dict):
            fail("run", f"must be an object, got {type(data).__name__}")
        check_json(RUN_FIELDS, data, fail, where)
        roles = data.get("special_tokens") or {}
        for role, token in roles.items():
            if not isinstance(token, int) or isinstance(token, bool):
                fail("special_tokens", f"maps {role!r} to {token!r}, not a token id")
        if data.get("dtype", "float32") not in STORAGE_DTYPES:
            fail("dtype", f"is {data.get('dtype')!r}, not one of {sorted(STORAGE_DTYPES)}")
        return cls(
            model_id=data.get("model_id") or "unknown",
            model_revision=data.get("model_revision"),
            dtype=data.get("dtype") or "float32",
            special_tokens=dict(roles),
            extra=dict(data.get("extra") or {}),
        )


# ---------------------------------------------------------------------------- field tables
# One table per record, read by the store (tamx.store) and the interchange (tamx.interchange)
# alike, and the conversions to and from stored values are derived from it. Adding a field
# is two lines: the attribute on the record's dataclass (with a default when optional) and
# its line here (with `since=` the schema version that adds it; `attribute=` where the
# dataclass holds it under another name) -- plus the code that produces it (docs/store.md).

RUN_FIELDS = (  # all optional: a missing one takes RunInfo's default
    json_field("model_id", str, required=False),
    json_field("model_revision", str, required=False),
    json_field("dtype", str, required=False),
    json_field("special_tokens", dict, required=False),
    json_field("extra", dict, required=False),
)

SAMPLE_FIELDS = (
    json_field("hidden_dtype", str, fix="name the stored dtype: float32, float16 or bfloat16"),
    json_field(
        "lm_head_dtype", str, fix="name the stored dtype: float32, float16 or bfloat16", attribute="lm_head.dtype"
    ),
    json_field("vision_blocks", list, fix="describe every vision block (start, grid, kind)"),
    json_field("tokens", list, required=False),
    json_field("candidate_tokens", list, required=False),
    json_field("messages", list, required=False),
    json_field("meta", dict, required=False),
    json_field("media", list, required=False),  # {item, kind, mime, frame}; bytes in arrays media.<i>
    array("input_ids", "int64", ("L",), fix="store the token ids as integers"),
    array("hidden", "@hidden_dtype", ("L-1", "C"), fix="store the final-norm hidden states, [L-1, C] floats"),
    array("answer_positions", "int64", ("N",), fix="store integer positions"),
    array("context_positions", "int64", ("M",), fix="store integer positions"),
    array("candidate_ids", "int64", ("N", "K"), required=False),
    array("candidate_logprobs", "float32", ("N", "K"), required=False),
    array("answer_logprobs", "float32", ("N",), required=False),
    array("lm_head_ids", "int64", ("U",), fix="store the token id of every LM-head row", attribute="lm_head.ids"),
    array(
        "lm_head_rows",
        "@lm_head_dtype",
        ("U", "C"),
        fix="store the LM-head row of every id the sample uses",
        attribute="lm_head.rows",
    ),
    array("lm_head_bias", "@lm_head_dtype", ("U",), required=False, attribute="lm_head.bias"),
    # baselines (docs/method.md, "Baseline methods"), each recorded on request by encode:
    # --layers: final-norm-applied states of earlier layers at the positions explain reads
    json_field("lens_layers", list, required=False, since=(2, 1)),
    array("lens_positions", "int64", ("P",), required=False, since=(2, 1)),
    array("lens_hidden", "@hidden_dtype", ("Y", "P", "C"), required=False, since=(2, 1)),
    # --attention: head-mean attention of every answer (prompt) token to the vision cells, and rollout
    json_field("attention_layers", list, required=False, since=(2, 1)),
    array("attention", "float32", ("A", "N", "V"), required=False, since=(2, 1)),
    array("attention_prompt", "float32", ("A", "M", "V"), required=False, since=(2, 1)),
    array("rollout", "float32", ("N", "V"), required=False, since=(2, 1)),
    array("rollout_prompt", "float32", ("M", "V"), required=False, since=(2, 1)),
    # --gradients LAYER: Grad-CAM of every answer (prompt) token at that layer
    json_field("gradient_layer", int, required=False, since=(2, 1)),
    array("gradient", "float32", ("N", "V"), required=False, since=(2, 1)),
    array("gradient_prompt", "float32", ("M", "V"), required=False, since=(2, 1)),
)


def media_json(media: list[Media]) -> list[dict[str, Any]]:
    return json_value(media)


def sample_values(sample: Sample) -> dict[str, Any]:
    """A sample as field name -> value (arrays in their stored dtype, JSON as stored); media
    bytes under "media.<i>" as uint8 arrays."""
    table = record_values(sample, SAMPLE_FIELDS)
    # The data object holds the hidden states before the input ids (as since schema 2.0), while
    # the table lists input_ids first so that L is bound before L-1: keep the stored bytes.
    values = {}
    for name, value in table.items():
        if name == "input_ids":
            values["hidden"] = table["hidden"]
        values.setdefault(name, value)
    for index, item in enumerate(sample.media):
        values[f"media.{index}"] = np.frombuffer(item.data, dtype=np.uint8)
    return values


def sample_from_values(sample_id: str, values: dict[str, Any]) -> Sample:
    """The inverse of `sample_values`, checked against SAMPLE_FIELDS (SampleError on the first fault)."""

    def fail(name: str, problem: str) -> None:
        raise SampleError(sample_id, name, problem)

    check_json(SAMPLE_FIELDS, values, fail, "sample")
    for name in ("hidden_dtype", "lm_head_dtype"):
        if values[name] not in STORAGE_DTYPES:
            fail(name, f"is {values[name]!r}, not one of {sorted(STORAGE_DTYPES)}")
    check_arrays(SAMPLE_FIELDS, values, fail)
    # The two JSON fields that hold records: vision blocks, and media whose bytes are arrays.
    blocks = []
    for index, block in enumerate(values["vision_blocks"]):
        try:
            blocks.append(VisionBlock.from_json(block))
        except (KeyError, TypeError, ValueError) as exc:
            fail("vision_blocks", f"block {index} is not a vision block ({type(exc).__name__}: {exc}); {REENCODE}")
    media = []
    check_media_json(sample_id, values.get("media") or [])
    for index, item in enumerate(values.get("media") or []):
        data = values.get(f"media.{index}")
        if data is None:
            fail(f"media.{index}", f"the bytes of media entry {index} are missing; {REENCODE}")
        media.append(Media(item["item"], item["kind"], item["mime"], data.tobytes(), item.get("frame")))
    try:
        arguments = record_arguments(Sample, SAMPLE_FIELDS, {**values, "vision_blocks": None, "media": None})
    except FieldError as exc:
        fail(exc.field, f"{exc.problem}; {REENCODE}")
    return Sample(id=sample_id, vision_blocks=tuple(blocks), media=media, **arguments)


@dataclass
class Sample:
    """Everything explain needs about one sample, plus what a report shows.

    hidden: [L-1, C] in the stored dtype (`hidden_dtype`; bfloat16 as uint16 bits);
    input_ids: [L]; answer_positions: [N]; context_positions: [M] (prompt text of all turns);
    candidate_ids / candidate_logprobs: [N, K] (top-k at each answer step) or None, and
    candidate_tokens: their decoded strings [N][K] or None;
    tokens: the decoded string of every input id, or None; lm_head: rows this sample needs;
    answer_logprobs: [N] log p of every answer token as the model scored it (generated or
    teacher-forced), or None where encode did not record it.
    Baselines, None unless encode recorded them (docs/encode.md): lens_layers [Y] (negative
    layer indices), lens_positions [P] and lens_hidden [Y, P, C] (final-norm-applied states of
    those layers at those positions, in `hidden_dtype`); attention_layers [A], attention [A, N, V]
    and attention_prompt [A, M, V] (head-mean attention to the vision cells from the position
    that predicts each answer / prompt token); rollout [N, V] and rollout_prompt [M, V];
    gradient_layer, gradient [N, V] and gradient_prompt [M, V] (Grad-CAM at that layer).
    """

    id: str
    hidden: np.ndarray
    input_ids: np.ndarray
    vision_blocks: tuple[VisionBlock, ...]
    answer_positions: np.ndarray
    context_positions: np.ndarray
    lm_head: LMHead
    hidden_dtype: str = "float32"
    candidate_ids: np.ndarray | None = None
    candidate_logprobs: np.ndarray | None = None
    candidate_tokens: list[list[str]] | None = None
    tokens: list[str] | None = None
    media: list[Media] = field(default_factory=list)
    messages: list[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    answer_logprobs: np.ndarray | None = None
    lens_layers: list[int] | None = None
    lens_positions: np.ndarray | None = None
    lens_hidden: np.ndarray | None = None
    attention_layers: list[int] | None = None
    attention: np.ndarray | None = None
    attention_prompt: np.ndarray | None = None
    rollout: np.ndarray | None = None
    rollout_prompt: np.ndarray | None = None
    gradient_layer: int | None = None
    gradient: np.ndarray | None = None
    gradient_prompt: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Widen ints to int64 and floats to float32; a value of the wrong kind is kept as it
        # is, for validate() to name it (float token ids are an error, not a conversion).
        self.input_ids = _widen(self.input_ids, np.int64)
        self.answer_positions = _widen(self.answer_positions, np.int64)
        self.context_positions = _widen(self.context_positions, np.int64)
        self.vision_blocks = tuple(self.vision_blocks)
        if self.candidate_ids is not None:
            self.candidate_ids = _widen(self.candidate_ids, np.int64)
        if self.candidate_logprobs is not None:
            self.candidate_logprobs = _widen(self.candidate_logprobs, np.float32)
        if self.answer_logprobs is not None:
            self.answer_logprobs = _widen(self.answer_logprobs, np.float32)

    def __repr__(self) -> str:
        blocks = ", ".join(f"{b.kind} {'x'.join(map(str, b.grid))}" for b in self.vision_blocks) or "no vision"
        return (
            f"Sample({self.id!r}, {len(self.input_ids)} tokens, {len(self.answer_positions)} answer, "
            f"{len(self.context_positions)} context, {blocks}, hidden {list(self.hidden.shape)} {self.hidden_dtype}, "
            f"{len(self.media)} media)"
        )

    @property
    def vision_size(self) -> int:
        """Total number of vision positions: the length of every map."""
        return sum(block.size for block in self.vision_blocks)

    def hidden_float32(self) -> np.ndarray:
        """Hidden states decoded to float32, [L-1, C]."""
        return to_float32(self.hidden, self.hidden_dtype)

    def needed_token_ids(self) -> np.ndarray:
        """Every token id explain needs an LM-head row for (unique, ascending)."""
        parts = [self.input_ids[self.context_positions], self.input_ids[self.answer_positions]]
        if self.candidate_ids is not None:
            parts.append(self.candidate_ids.ravel())
        return np.unique(np.concatenate(parts).astype(np.int64))

    def validate(self, special_tokens: dict[str, int] | None = None) -> None:
        """Raise SampleError naming the field if the sample is inconsistent."""
        validate_sample(self, special_tokens or {})


def _widen(value: Any, dtype: type) -> np.ndarray:
    """`value` as an array of `dtype` when it holds that kind of number (int or float), else as is."""
    value = np.asarray(value)
    kind = "iu" if np.dtype(dtype).kind == "i" else "f"
    if value.size == 0 or value.dtype.kind in kind:
        return value.astype(dtype, copy=False)
    return value


MAPS_FIELDS = (
    json_field("settings", dict),
    json_field("nonfinite_hidden", int, required=False),
    json_field("nonfinite_lm_head", int, required=False),
    json_field("deferred", list, required=False),  # arrays an earlier explain left out (tamx.explain.complete_maps)
    array("cam", "float32", ("N", "V"), tensor="maps.cam"),
    array("eci", "float32", ("N", "V"), tensor="maps.eci"),
    array("tam", "float32", ("N", "V"), tensor="maps.tam", attribute="final"),
    array("text_relevance", "float32", ("N", "M")),
    array("scale", "float32", ("N", "G"), required=False, tensor="maps.scale"),  # one per image or video
    array("answer_relevance", "float32", ("N", "N"), required=False),
    array("candidate_maps", "float32", ("N", "K", "V"), required=False, tensor="maps.candidates"),
    array("prompt_maps", "float32", ("M", "V"), required=False, tensor="maps.prompt"),
    array("prompt_relevance", "float32", ("M", "M"), required=False),
)
MAPS_ARRAYS = tuple(f.name for f in MAPS_FIELDS if f.kind == "array")


def maps_attribute(name: str) -> str:
    """The Maps attribute that holds the stored field `name` (its table line's `attribute`)."""
    return next((f.attribute for f in MAPS_FIELDS if f.name == name and f.attribute), name)


def sample_dims(sample: Sample) -> dict[str, int]:
    """The dimensions a sample fixes for its maps: N, M, V, G (images and videos) and K (when it
    has candidates)."""
    groups = {(b.kind, b.media) for b in sample.vision_blocks}
    dims = {"N": len(sample.answer_positions), "M": len(sample.context_positions), "V": sample.vision_size}
    dims["G"] = len(groups)
    if sample.candidate_ids is not None:
        dims["K"] = sample.candidate_ids.shape[1]
    return dims


@dataclass
class Maps:
    """One explain variant of one sample (all float32; V = sum of T*H*W over blocks).

    cam / eci / final: [N, V] answer-token maps after Eq. 1, after ECI (Eq. 2 before the
    filter) and the variant's final map, after its filter (for the paper's TAM the TAM, for
    "cam" the CAM; stored under the field name "tam", tensor "maps.tam"; `tam` still reads
    it); scale: [N, G] least-squares s_i (Eq. 5), one per image or video
    (`tamx.layout.media_groups` order; schema-1 runs stored [N]);
    text_relevance: [N, M] r_i over context_positions; answer_relevance: [N, N] r_i over
    earlier answer tokens; candidate_maps: [N, K, V]; prompt_maps: [M, V];
    prompt_relevance: [M, M]. settings: the explain settings that produced them. deferred:
    the optional arrays the settings ask for that an earlier `tamx explain` left out (None
    here until `tamx.explain.complete_maps` computes them; `Run.maps` computes nothing).
    """

    variant: str
    settings: dict[str, Any]
    cam: np.ndarray
    eci: np.ndarray
    final: np.ndarray
    text_relevance: np.ndarray
    scale: np.ndarray | None = None
    answer_relevance: np.ndarray | None = None
    candidate_maps: np.ndarray | None = None
    prompt_maps: np.ndarray | None = None
    prompt_relevance: np.ndarray | None = None
    nonfinite_hidden: int = 0
    nonfinite_lm_head: int = 0
    deferred: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        n, v = self.final.shape if self.final.ndim == 2 else (len(self.final), 0)
        extra = [name for name in MAPS_ARRAYS[4:] if getattr(self, maps_attribute(name)) is not None]
        return f"Maps({self.variant!r}, {n} tokens x {v} cells, with {', '.join(extra) or 'no extras'})"

    @property
    def tam(self) -> np.ndarray:
        """The final map under its stored name (read-only; use `final`)."""
        return self.final

    def arrays(self) -> dict[str, np.ndarray]:
        """The present arrays by stored field name ("tam" holds `final`)."""
        present = ((name, getattr(self, maps_attribute(name))) for name in MAPS_ARRAYS)
        return {name: value for name, value in present if value is not None}

    def span(self, start: int, stop: int, rule: str = "mean") -> np.ndarray:
        """One map [V] for answer tokens start..stop-1 (a phrase, the whole answer): the mean of
        their final maps, or with rule="weighted" weighted by each map's total positive
        activation (`tamx.spans`, docs/method.md "Spans")."""
        from .spans import span_map

        return span_map(self.final, start, stop, rule)

    def values(self) -> dict[str, Any]:
        """Field name -> value for MAPS_FIELDS (arrays as float32; absent ones left out)."""
        values = record_values(self, MAPS_FIELDS)
        for name in MAPS_ARRAYS:
            if values[name] is None:
                del values[name]
            else:
                values[name] = np.asarray(values[name], dtype=np.float32)
        return values

    @classmethod
    def from_values(cls, variant: str, values: dict[str, Any], sample_id: str, dims: dict[str, int]) -> Maps:
        """Maps from field values, checked against MAPS_FIELDS and the sample's dims (SampleError)."""

        def fail(name: str, problem: str) -> None:
            raise SampleError(sample_id, f"maps/{variant}/{name}", problem)

        check_json(MAPS_FIELDS, values, fail, "maps")
        check_arrays(MAPS_FIELDS, values, fail, dims)
        return cls(variant=variant, **record_arguments(cls, MAPS_FIELDS, values))

    def validate(self, sample_id: str, dims: dict[str, int]) -> None:
        """Raise SampleError if a field does not match MAPS_FIELDS or the sample's dims."""
        Maps.from_values(self.variant, self.values(), sample_id, dims)
