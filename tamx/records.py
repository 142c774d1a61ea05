"""The records of a run: one dataclass per thing the store holds, with their checks.

Positions index the model's token sequence `input_ids[0..L)`. `hidden[p]` is the last-layer
hidden state at position p (after the final norm), which predicts `input_ids[p + 1]`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dtypes import STORAGE_DTYPES, check_dtype_name, to_float32
from .errors import FieldError, SampleError, StoreError, TamxError, shown_id
from .fields import SCHEMA, array, check_arrays, check_json, json_field

SCHEMA_VERSION = SCHEMA[0]
VISION_KINDS = ("image", "video")
ID_MAX_LENGTH = 200
ID_RULE = (
    "letters, digits, '_', '.' and '-', at most 200 characters, starting with a letter, digit or '_' "
    "and not ending with '.'"
)
_ID_START = re.compile(r"[A-Za-z0-9_]")
_ID_CHAR = re.compile(r"[A-Za-z0-9_.\-]")
# Device names Windows reserves (with any extension).
_RESERVED_ID = re.compile(r"(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?", re.IGNORECASE)


def name_problem(name: object, portable: bool = True) -> str | None:
    """Why `name` cannot name a folder of the store (a sample id, a variant), or None if it can.

    `portable` also refuses what only some systems refuse (a trailing '.', Windows device
    names): new names are checked so, names already stored only for safety, so that runs
    written before this rule stay readable.
    """
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "is empty"
    if len(name) > ID_MAX_LENGTH:
        return f"is {len(name)} characters long, over the limit of {ID_MAX_LENGTH}"
    bad = sorted({c for c in name if not _ID_CHAR.fullmatch(c)})
    if bad:
        return f"holds {', '.join(repr(c) for c in bad)}"
    if not _ID_START.fullmatch(name[0]):
        return f"starts with {name[0]!r}"
    if name.lower() == "zarr.json":
        return "is a reserved name (the store's own metadata file)"
    if portable and name.endswith("."):
        return "ends with '.'"
    if portable and _RESERVED_ID.fullmatch(name):
        return "is a reserved name (a device on Windows)"
    return None


def check_name(name: object, what: str, portable: bool = True) -> str:
    """Return `name` if it can name a folder of the store, else raise TamxError naming the rule."""
    problem = name_problem(name, portable)
    if problem is not None:
        raise TamxError(f"the {what} {shown_id(name)} {problem}; {what}s use {ID_RULE}")
    return name


def check_sample_id(sample_id: str, portable: bool = False) -> str:
    """Return `sample_id` if it can name a folder of the store, else raise SampleError naming the rule
    (`portable`: as a new id, see `name_problem`)."""
    problem = name_problem(sample_id, portable)
    if problem is not None:
        raise SampleError(str(sample_id), "id", f"the id {problem}; sample ids use {ID_RULE}")
    return sample_id


def is_sample_id(sample_id: object) -> bool:
    """Whether `sample_id` can name a folder of the store (as an id already stored)."""
    return name_problem(sample_id, portable=False) is None


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
        data = {
            "start": self.start,
            "grid": list(self.grid),
            "kind": self.kind,
            "media": self.media,
            "frames": [list(f) for f in self.frames],
            "unmapped": self.unmapped,
            "box": None if self.box is None else list(self.box),
            "image_size": None if self.image_size is None else list(self.image_size),
            "times": [list(t) for t in self.times],
            "label": self.label,
            "row_newline": self.row_newline,
            "separator": self.separator,
            "tiles": [list(t) for t in self.tiles],
            "tile_boxes": [list(b) for b in self.tile_boxes],
        }
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VisionBlock:
        if not isinstance(data, dict):
            raise TypeError(f"a vision block is an object, not {type(data).__name__}")
        size = data.get("image_size")
        return cls(
            start=int(data["start"]),
            grid=tuple(int(x) for x in data["grid"]),
            kind=str(data.get("kind", "image")),
            media=int(data.get("media", 0)),
            frames=tuple(tuple(int(x) for x in f) for f in data.get("frames", ())),
            unmapped=int(data.get("unmapped", 0)),
            box=None if data.get("box") is None else tuple(float(x) for x in data["box"]),
            image_size=None if size is None else (int(size[0]), int(size[1])),
            times=tuple(tuple(float(x) for x in t) for t in data.get("times", ())),
            label=str(data.get("label", "")),
            row_newline=bool(data.get("row_newline", False)),
            separator=str(data.get("separator", "")),
            tiles=tuple(tuple(int(x) for x in t) for t in data.get("tiles", ())),
            tile_boxes=tuple(tuple(float(x) for x in b) for b in data.get("tile_boxes", ())),
        )


@dataclass(frozen=True)
class Media:
    """One encoded image or video frame (JPEG or PNG bytes) of a sample's inputs."""

    item: int
    kind: str
    mime: str
    data: bytes
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
        return {
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "dtype": self.dtype,
            "special_tokens": dict(self.special_tokens),
            "extra": self.extra,
        }

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
# alike. Adding a field: one line here (with `since=` the schema version that adds it) plus
# the code that produces it.

RUN_FIELDS = (  # all optional: a missing one takes RunInfo's default
    json_field("model_id", str, required=False),
    json_field("model_revision", str, required=False),
    json_field("dtype", str, required=False),
    json_field("special_tokens", dict, required=False),
    json_field("extra", dict, required=False),
)

REENCODE = "re-encode or re-import this sample"
SAMPLE_FIELDS = (
    json_field("hidden_dtype", str, fix="name the stored dtype: float32, float16 or bfloat16"),
    json_field("lm_head_dtype", str, fix="name the stored dtype: float32, float16 or bfloat16"),
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
    array("lm_head_ids", "int64", ("U",), fix="store the token id of every LM-head row"),
    array("lm_head_rows", "@lm_head_dtype", ("U", "C"), fix="store the LM-head row of every id the sample uses"),
    array("lm_head_bias", "@lm_head_dtype", ("U",), required=False),
)
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


def media_json(media: list[Media]) -> list[dict[str, Any]]:
    return [{"item": m.item, "kind": m.kind, "mime": m.mime, "frame": m.frame} for m in media]


def sample_values(sample: Sample) -> dict[str, Any]:
    """A sample as field name -> value (arrays in their stored dtype, JSON as stored); media
    bytes under "media.<i>" as uint8 arrays."""
    head = sample.lm_head
    values: dict[str, Any] = {
        "hidden_dtype": sample.hidden_dtype,
        "lm_head_dtype": head.dtype,
        "vision_blocks": [b.to_json() for b in sample.vision_blocks],
        "tokens": sample.tokens,
        "candidate_tokens": sample.candidate_tokens,
        "messages": sample.messages,
        "meta": sample.meta,
        "media": media_json(sample.media),
        "hidden": sample.hidden,
        "input_ids": sample.input_ids,
        "answer_positions": sample.answer_positions,
        "context_positions": sample.context_positions,
        "candidate_ids": sample.candidate_ids,
        "candidate_logprobs": sample.candidate_logprobs,
        "answer_logprobs": sample.answer_logprobs,
        "lm_head_ids": head.ids,
        "lm_head_rows": head.rows,
        "lm_head_bias": head.bias,
    }
    for index, item in enumerate(sample.media):
        values[f"media.{index}"] = np.frombuffer(item.data, dtype=np.uint8)
    return values


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


def sample_from_values(sample_id: str, values: dict[str, Any]) -> Sample:
    """The inverse of `sample_values`, checked against SAMPLE_FIELDS (SampleError on the first fault)."""

    def fail(name: str, problem: str) -> None:
        raise SampleError(sample_id, name, problem)

    check_json(SAMPLE_FIELDS, values, fail, "sample")
    for name in ("hidden_dtype", "lm_head_dtype"):
        if values[name] not in STORAGE_DTYPES:
            fail(name, f"is {values[name]!r}, not one of {sorted(STORAGE_DTYPES)}")
    check_arrays(SAMPLE_FIELDS, values, fail)
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
        head = LMHead(
            ids=values["lm_head_ids"],
            rows=values["lm_head_rows"],
            dtype=values["lm_head_dtype"],
            bias=values.get("lm_head_bias"),
        )
    except FieldError as exc:
        fail(exc.field, f"{exc.problem}; {REENCODE}")
    return Sample(
        id=sample_id,
        hidden=values["hidden"],
        hidden_dtype=values["hidden_dtype"],
        input_ids=values["input_ids"],
        vision_blocks=tuple(blocks),
        answer_positions=values["answer_positions"],
        context_positions=values["context_positions"],
        lm_head=head,
        candidate_ids=values.get("candidate_ids"),
        candidate_logprobs=values.get("candidate_logprobs"),
        answer_logprobs=values.get("answer_logprobs"),
        candidate_tokens=values.get("candidate_tokens"),
        tokens=values.get("tokens"),
        media=media,
        messages=values.get("messages"),
        meta=values.get("meta") or {},
    )


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


def _fail(sample: Sample, name: str, problem: str) -> None:
    raise SampleError(sample.id, name, problem)


def _check_positions(sample: Sample, name: str, positions: np.ndarray, limit: int) -> None:
    if positions.ndim != 1:
        _fail(sample, name, f"must be 1-D, got shape {positions.shape}")
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
    """Check every field against SAMPLE_FIELDS (types, dtypes, shapes), then positions, grids and
    LM-head coverage; raise SampleError naming the field on the first fault."""
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
    if sample.input_ids.ndim != 1 or length < 2:
        _fail(sample, "input_ids", f"must be 1-D with at least 2 tokens, got shape {sample.input_ids.shape}")
    if sample.hidden.ndim != 2 or sample.hidden.shape[0] != length - 1:
        _fail(sample, "hidden", f"must be [L-1, C] = [{length - 1}, C], got {sample.hidden.shape}")
    if sample.hidden.dtype != STORAGE_DTYPES[sample.hidden_dtype]:
        _fail(sample, "hidden", f"holds {sample.hidden.dtype} but hidden_dtype is {sample.hidden_dtype}")
    _check_positions(sample, "answer_positions", sample.answer_positions, length)
    if len(sample.answer_positions) == 0:
        _fail(sample, "answer_positions", "the sample has no answer token to explain")
    if sample.answer_positions[0] < 1:
        _fail(sample, "answer_positions", "the first answer token needs a position >= 1")
    _check_positions(sample, "context_positions", sample.context_positions, length - 1)
    _check_blocks(sample, special_tokens)
    _check_position_sets(sample)
    n = len(sample.answer_positions)
    for name in ("candidate_ids", "candidate_logprobs"):
        value = getattr(sample, name)
        if value is not None and (value.ndim != 2 or value.shape[0] != n):
            _fail(sample, name, f"must be [N, K] with N = {n} answer tokens, got {value.shape}")
    if sample.answer_logprobs is not None and sample.answer_logprobs.shape != (n,):
        _fail(sample, "answer_logprobs", f"must be [N] with N = {n} answer tokens, got {sample.answer_logprobs.shape}")
    if sample.candidate_tokens is not None and (
        sample.candidate_ids is None or [len(r) for r in sample.candidate_tokens] != [sample.candidate_ids.shape[1]] * n
    ):
        _fail(sample, "candidate_tokens", "must hold one string per candidate id, [N][K]")
    if sample.tokens is not None and len(sample.tokens) != length:
        _fail(sample, "tokens", f"has {len(sample.tokens)} strings for {length} input ids")
    head = sample.lm_head
    if head.rows.ndim != 2 or head.rows.shape != (len(head.ids), sample.hidden.shape[1]):
        _fail(
            sample,
            "lm_head_rows",
            f"must be [U, C] = [{len(head.ids)}, {sample.hidden.shape[1]}], got {head.rows.shape}",
        )
    check_lm_head_covers(sample, sample.needed_token_ids())


def check_lm_head_covers(sample: Sample, token_ids: np.ndarray) -> None:
    """Raise SampleError if the sample's LM-head rows lack any of `token_ids`."""
    missing = sample.lm_head.missing(token_ids)
    if len(missing):
        shown = ", ".join(str(t) for t in missing[:10]) + (" ..." if len(missing) > 10 else "")
        _fail(sample, "lm_head_rows", f"no LM-head row for {len(missing)} token id(s) explain needs: {shown}")


# The fields of a Maps record (all float32; N answer, M context, K candidates, V vision cells).
MAPS_FIELDS = (
    json_field("settings", dict),
    json_field("nonfinite_hidden", int, required=False),
    json_field("nonfinite_lm_head", int, required=False),
    json_field("deferred", list, required=False),  # arrays an earlier explain left out (tamx.explain.complete_maps)
    array("cam", "float32", ("N", "V"), tensor="maps.cam"),
    array("eci", "float32", ("N", "V"), tensor="maps.eci"),
    array("tam", "float32", ("N", "V"), tensor="maps.tam"),
    array("text_relevance", "float32", ("N", "M")),
    array("scale", "float32", ("N", "G"), required=False, tensor="maps.scale"),  # one per image or video
    array("answer_relevance", "float32", ("N", "N"), required=False),
    array("candidate_maps", "float32", ("N", "K", "V"), required=False, tensor="maps.candidates"),
    array("prompt_maps", "float32", ("M", "V"), required=False, tensor="maps.prompt"),
    array("prompt_relevance", "float32", ("M", "M"), required=False),
)
MAPS_ARRAYS = tuple(f.name for f in MAPS_FIELDS if f.kind == "array")
_MAPS_ATTRIBUTES = {"tam": "final"}  # stored field name -> Maps attribute, where they differ


def maps_attribute(name: str) -> str:
    """The Maps attribute that holds the stored field `name`."""
    return _MAPS_ATTRIBUTES.get(name, name)


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

    def values(self) -> dict[str, Any]:
        """Field name -> value for MAPS_FIELDS (arrays as float32)."""
        values: dict[str, Any] = {
            "settings": self.settings,
            "nonfinite_hidden": self.nonfinite_hidden,
            "nonfinite_lm_head": self.nonfinite_lm_head,
            "deferred": list(self.deferred),
        }
        values.update({name: np.asarray(v, dtype=np.float32) for name, v in self.arrays().items()})
        return values

    @classmethod
    def from_values(cls, variant: str, values: dict[str, Any], sample_id: str, dims: dict[str, int]) -> Maps:
        """Maps from field values, checked against MAPS_FIELDS and the sample's dims (SampleError)."""

        def fail(name: str, problem: str) -> None:
            raise SampleError(sample_id, f"maps/{variant}/{name}", problem)

        check_json(MAPS_FIELDS, values, fail, "maps")
        check_arrays(MAPS_FIELDS, values, fail, dims)
        return cls(
            variant=variant,
            settings=values["settings"],
            nonfinite_hidden=values.get("nonfinite_hidden") or 0,
            nonfinite_lm_head=values.get("nonfinite_lm_head") or 0,
            deferred=list(values.get("deferred") or []),
            **{maps_attribute(name): values.get(name) for name in MAPS_ARRAYS},
        )

    def validate(self, sample_id: str, dims: dict[str, int]) -> None:
        """Raise SampleError if a field does not match MAPS_FIELDS or the sample's dims."""
        Maps.from_values(self.variant, self.values(), sample_id, dims)
