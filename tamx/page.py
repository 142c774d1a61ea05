"""The page's data contract: what one sample's page (`vis_templates/report.js`) is given.

`tamx.report.page_data` produces a `PageData` (and `empty_page_data` the one of a page with no
sample yet, `tamx serve` in model mode); `tamx render` writes it into each sample's HTML,
`tamx serve` sends it as JSON (`/api/runs/RUN/samples/ID`) and report.js's `load(data)` reads it.
Every key is declared here once; tests/test_page.py checks that report.js reads no key this
does not declare and that every produced page has exactly these keys.

PAGE_VERSION counts incompatible changes of this contract (a key renamed, removed or given
another meaning); raise it with such a change. Adding an optional key is compatible.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

PAGE_VERSION = 1


class PackedArray(TypedDict):
    """A typed array (`tamx.report.pack_array`): base64 of its little-endian bytes."""

    dtype: Literal["uint8", "uint16", "float32"]
    shape: list[int]
    data: str


class _VariantViewRequired(TypedDict):
    settings: dict[str, Any]  # the ExplainSettings the maps were computed with
    label: str  # its heading: method and layer ("TAM, layer -8", "Grad-CAM, layer -2"), tamx.methods.variant_title
    answer: PackedArray  # [N, V] uint8: every answer token's map, jointly normalised (Eq. 3)
    answer_text: PackedArray  # [N, Q + N] uint8: its context and earlier-answer relevance
    answer_scale: PackedArray  # [N, 3] float32: min, max of the joint scale, the map's own max


class FaithfulnessView(TypedDict):
    """One variant's stored deletion and insertion curves (`tamx faithfulness`,
    docs/faithfulness.md) of the answer tokens that have them: the fractions are 0, 1/steps, ..., 1."""

    tokens: list[int]  # the T answer-token indices with curves
    steps: int  # S = steps + 1 points per curve
    names: list[str]  # the C curves: deletion, insertion, random_deletion, random_insertion[, mask_*]
    curves: PackedArray  # [C, T, S] float32: p of the token along each curve (NaN: no mask)
    aucs: list[list[float | None]]  # [C][T]: the area under each curve (None: no mask)
    settings: dict[str, Any]  # the record's settings (steps, baseline, random orders, ...)


class VariantView(_VariantViewRequired, total=False):
    """One variant's maps (`tamx.report._variant_view`); candidate and prompt maps where stored."""

    candidates: PackedArray  # [N * k, V] uint8
    candidates_scale: PackedArray  # [N * k, 3] float32
    prompt: PackedArray  # [P, V] uint8
    prompt_text: PackedArray  # [P, Q + N] uint8
    prompt_scale: PackedArray  # [P, 3] float32
    # colour scale "map": each row on its own range (the map alone, the text relevance alone)
    answer_own: PackedArray  # [N, V] uint8
    answer_text_own: PackedArray  # [N, Q + N] uint8
    answer_own_scale: PackedArray  # [N, 3] float32: the map's min, max, max
    answer_text_own_scale: PackedArray  # [N, 3] float32: the text relevance's min, max, max
    prompt_own: PackedArray  # [P, V] uint8
    prompt_text_own: PackedArray  # [P, Q + N] uint8
    prompt_own_scale: PackedArray  # [P, 3] float32
    prompt_text_own_scale: PackedArray  # [P, 3] float32
    faithfulness: FaithfulnessView  # only where the variant has a faithfulness record


class FrameView(TypedDict):
    """One drawn 2-D slice of a map (`tamx.layout.map_frames`): where it sits, what it shows."""

    offset: int  # its first cell in a map row
    height: int
    width: int
    block: int  # index into PageData.blocks
    kind: str  # "image" or "video"
    media: int  # the image or video item it belongs to
    slice: int  # its number within its block
    box: list[float] | None  # the region of the image the model saw (x0, y0, x1, y1), None: all
    label: str
    images: list[int]  # indices into PageData.images drawn under it
    frames: list[int]  # the video frames it covers
    times: list[float] | None  # [start, end) in seconds where the frame rate is known


class BlockView(TypedDict):
    kind: str
    grid: list[int]
    label: str
    assumed: bool  # no box recorded: the grid is drawn over the whole image


class MethodView(TypedDict):
    """A map method the sample holds what it reads for (`tamx.methods.recorded_methods`): what
    `tamx serve`'s method and layer selectors offer (its live maps' `method=` and `layer=`)."""

    name: str  # a name in tamx.methods.METHODS
    title: str  # its readable name ("TAM", "attention (head mean)", "Grad-CAM"; tamx.methods.TITLES)
    layers: list[int]  # the layers it can be computed at (-1 the last); [] where it takes none
    filter: str  # the filter `tamx explain --method NAME` uses unless told (tamx.methods.default_filter)


class PageData(TypedDict):
    """Everything one sample's page shows, JSON-ready: the payload of `window.tamx.load(data)`."""

    id: str  # the sample id ("" on an empty page)
    model: str  # the model's display name
    run: str | None  # the run's name where several runs are compared
    notice: str | None  # the run's notice (a warning shown above the page)
    mode: str  # "generate" or "teacher-forced"
    vision_size: int  # cells in a map row
    images: list[str]  # data URIs of the sample's media
    image_sizes: list[list[int] | None]  # [width, height] of each, None where it cannot be decoded
    frames: list[FrameView]
    blocks: list[BlockView]
    segments: list[dict[str, Any]]  # the sequence as runs of template, prompt, vision, answer tokens
    answer_words: list[int]  # the word of every answer token
    answer_probs: list[float] | None  # p of every answer token as the model scored it
    candidates: list[list[str]]  # the top-k candidates' strings at every answer step
    candidate_probs: list[list[float]]
    n_context: int  # prompt (context) tokens
    variants: dict[str, VariantView]
    methods: list[MethodView]  # the methods the sample can be explained with, tam first ([] on an empty page)
    default_variant: str | None
    shown_variants: list[str]  # the variants the page opens with, side by side
    scale: Literal["map", "joint"]  # the colour scale the page opens with (tamx.report.SCALES)
    lut: PackedArray  # [256, 3] uint8: the colour map


class ComparisonData(TypedDict):
    """The same sample from several runs side by side (`tamx.report.comparison_data`)."""

    id: str
    runs: list[PageData]
    default_variant: str | None
    shown_variants: list[str]
    scale: Literal["map", "joint"]


PAGE_KEYS = frozenset(PageData.__annotations__)
VARIANT_KEYS = frozenset(VariantView.__required_keys__ | VariantView.__optional_keys__)
