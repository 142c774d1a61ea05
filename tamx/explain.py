"""Token activation maps of one sample: CAM, ECI, the filter and text relevance (docs/method.md).

Answer tokens, their top-k candidates and the prompt tokens are all "targets": a position
whose hidden state context is everything before it, and a class whose map is wanted. They
are explained together, with two matrix products per sample (vision and context hidden
states times the LM-head rows of every class involved) and one filter pass.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from . import defaults
from .activation import activation_maps, class_logits
from .decode import gather_float32
from .dtypes import to_float32
from .eci import (
    ECI_WEIGHTINGS,
    check_eci_mode,
    interference,
    least_squares_scale,
    relevance,
    remove_interference,
)
from .errors import TamxError
from .filters import check_filter_name, check_kernel_size, filter_maps, load_compiled_3x3
from .layout import cell_block_starts, context_pool, frame_table, media_groups, vision_positions
from .records import Maps, Sample, check_lm_head_covers

log = logging.getLogger(__name__)

ECI_MODES = tuple(ECI_WEIGHTINGS)  # the names of tamx.eci.ECI_WEIGHTINGS


@dataclass(frozen=True)
class ExplainSettings:
    """How maps are computed. eci: "relevance" (Eq. 4), "uniform" (ECI-mean) or "off" (tamx.eci.ECI_WEIGHTINGS);
    filter: "rank-gaussian", "median", "gaussian", "adaptive-median" or "none" (tamx.filters.FILTERS);
    kernel_size: odd >= 1 (the largest window of the adaptive median);
    method: a name in tamx.methods.METHODS ("tam": the family above; "attention", "rollout",
    "gradient": maps from what encode recorded, the ECI mode unused); layer: the decoder layer
    whose final-norm-applied states the TAM family reads (-1 the last; others the logit lens,
    recorded by `tamx encode --layers`)."""

    eci: str = defaults.ECI
    filter: str = defaults.FILTER
    kernel_size: int = defaults.KERNEL_SIZE
    candidates: bool = True
    prompt: bool = True
    method: str = "tam"
    layer: int = -1

    def __post_init__(self) -> None:
        check_eci_mode(self.eci)
        check_filter_name(self.filter)
        check_kernel_size(self.kernel_size)
        from .methods import check_method  # the registry imports this module

        check_method(self.method)
        check_layer(self.layer)

    def variant_name(self) -> str:
        """A readable default name: "tam" for the paper's method, "cam" for neither module; another
        layer adds "_lL" ("tam_l-8": variant names hold no "@"), another method names itself
        ("attention", "rollout-median") and the layer where it has one ("gradient_l-2", the
        layer encode recorded Grad-CAM at: tamx.methods.resolve_layer)."""
        filt = "" if self.filter == "none" else self.filter
        if self.kernel_size != defaults.KERNEL_SIZE and filt:
            filt += f"-k{self.kernel_size}"
        if self.method != "tam":
            name = "-".join(part for part in (self.method, filt) if part)
            return f"{name}_l{self.layer}" if self.method == "gradient" else name
        eci = ECI_WEIGHTINGS[self.eci].variant
        if eci == "eci" and filt == "rank-gaussian":
            name = "tam"
        else:
            name = "-".join(part for part in (eci, filt) if part) or "cam"
        return name if self.layer == -1 else f"{name}_l{self.layer}"

    def to_json(self) -> dict[str, Any]:
        """The settings as stored beside their maps; method and layer only where not the default
        (so that maps stored before they existed keep their settings)."""
        data = asdict(self)
        for key, default in (("method", "tam"), ("layer", -1)):
            if data[key] == default:
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ExplainSettings:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def check_layer(layer: object) -> int:
    """A decoder layer counted from the last (-1), else a TamxError saying how to give one."""
    if isinstance(layer, bool) or not isinstance(layer, int) or layer >= 0:
        raise TamxError(f"layer {layer!r} is not a layer counted from the last: give -1 (the last), -2, -8, ...")
    return layer


def read_positions(sample: Sample) -> np.ndarray:
    """The positions whose hidden states explain reads: the vision cells and the context pool."""
    pool = context_pool(sample.context_positions, sample.answer_positions)
    return np.union1d(vision_positions(sample.vision_blocks), pool).astype(np.int64)


def layer_sample(sample: Sample, layer: int) -> Sample:
    """`sample` with the final-norm-applied states of `layer` as its hidden states (the logit
    lens): the sample itself for -1, else its recorded `lens_hidden` row of that layer at the
    positions encode stored (every position explain reads); a TamxError naming the encode
    option when that layer was not recorded."""
    if check_layer(layer) == -1:
        return sample
    layers = list(sample.lens_layers or [])
    if layer not in layers:
        recorded = ", ".join(map(str, [-1, *layers]))
        raise TamxError(
            f"sample {sample.id!r} has no states of layer {layer} (recorded: {recorded}); "
            f"encode it with `tamx encode --layers -1,{layer}` to explain that layer"
        )
    if sample.lens_positions is None or sample.lens_hidden is None:
        raise TamxError(f"sample {sample.id!r} names layer {layer} but holds no states of it; re-encode it")
    lacking = np.setdiff1d(read_positions(sample), sample.lens_positions)
    if len(lacking):
        raise TamxError(
            f"sample {sample.id!r}: the states of layer {layer} lack {len(lacking)} position(s) explain reads; "
            "re-encode it"
        )
    hidden = np.zeros_like(sample.hidden)
    hidden[sample.lens_positions] = sample.lens_hidden[layers.index(layer)]
    return replace(sample, hidden=hidden)


@dataclass
class _TargetMaps:
    """Per-target results: cam / eci / final [T, V], scale [T, G], relevance [T, Q]."""

    cam: np.ndarray
    eci: np.ndarray
    final: np.ndarray
    scale: np.ndarray
    relevance: np.ndarray


def decode_hidden(sample: Sample, positions: np.ndarray) -> tuple[np.ndarray, int]:
    """Hidden states at `positions` as float32 [P, C], non-finite values set to 0, and their count."""
    return gather_float32(sample.hidden, positions, sample.hidden_dtype)


def _finite_weights(sample: Sample, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, int]:
    """LM-head rows and bias of `classes` as float32, non-finite values set to 0 (warned), and their count."""
    head = sample.lm_head
    index = np.searchsorted(head.ids, classes)
    rows, bad = gather_float32(head.rows, index, head.dtype)
    bias = None if head.bias is None else to_float32(head.bias[index], head.dtype)
    if bias is not None:
        bad += int(bias.size - np.count_nonzero(np.isfinite(bias)))
    if bad:
        token_ids = classes[~np.isfinite(to_float32(head.rows[index], head.dtype)).all(axis=1)]
        if bias is not None:
            token_ids = np.union1d(token_ids, classes[~np.isfinite(bias)])
        log.warning(
            "sample %r: %d non-finite LM-head value(s) (NaN/Inf) in the rows of token id(s) %s treated as 0; "
            "the maps of those tokens are not meaningful: re-encode the sample",
            sample.id,
            bad,
            ", ".join(map(str, token_ids[:10].tolist())),
        )
        if bias is not None:
            bias = np.where(np.isfinite(bias), bias, 0.0).astype(np.float32)
    return rows, bias, bad


def _explain_targets(
    positions: np.ndarray,
    classes: np.ndarray,
    class_maps: np.ndarray,
    pool: np.ndarray,
    pool_classes: np.ndarray,
    pool_logits: np.ndarray,
    cell_starts: np.ndarray,
    groups: np.ndarray,
    frames: np.ndarray,
    settings: ExplainSettings,
) -> _TargetMaps:
    """Explain targets at `positions` [T] with class indices `classes` [T] into class_maps [V, U]."""
    visible = pool[None, :] < positions[:, None]
    r = relevance(pool_logits, pool_classes, classes, visible)
    cam = np.ascontiguousarray(class_maps[:, classes].T)
    cells_visible = cell_starts[None, :] < positions[:, None]
    masked = not bool(cells_visible.all())
    if masked:
        cam *= cells_visible
    weighting = ECI_WEIGHTINGS[settings.eci].weights
    if weighting is None:
        eci = cam
        scale = np.zeros((len(positions), int(groups.max()) + 1 if len(groups) else 0), dtype=np.float32)
    else:
        weights = weighting(r, visible & (pool_classes[None, :] != classes[:, None]))
        estimate = interference(weights, np.ascontiguousarray(class_maps[:, pool_classes].T))
        if masked:
            estimate *= cells_visible
        scale = least_squares_scale(cam, estimate, groups)  # one scale per image / video
        eci = remove_interference(cam, estimate, scale, groups)
    final = np.maximum(filter_maps(eci, frames, settings.filter, settings.kernel_size), 0.0)
    return _TargetMaps(cam=cam, eci=eci, final=final, scale=scale, relevance=r)


DEFERRED = ("candidate_maps", "prompt_maps", "prompt_relevance")


def _target_batches(sample: Sample, settings: ExplainSettings) -> list[tuple[np.ndarray, np.ndarray]]:
    """The targets `settings` asks for as (positions [T], class ids [T]) batches: the answer
    tokens, then (if any) the top-k candidates and prompt tokens together."""
    ids, answers, context = sample.input_ids, sample.answer_positions, sample.context_positions
    extra_pos, extra_ids = [], []
    if settings.candidates and sample.candidate_ids is not None:
        extra_pos.append(np.repeat(answers, sample.candidate_ids.shape[1]))
        extra_ids.append(sample.candidate_ids.ravel())
    if settings.prompt:
        extra_pos.append(context)
        extra_ids.append(ids[context])
    batches = [(answers, ids[answers])]
    if extra_pos:
        batches.append((np.concatenate(extra_pos), np.concatenate(extra_ids)))
    return batches


def _explain_batches(
    sample: Sample, settings: ExplainSettings, batches: list[tuple[np.ndarray, np.ndarray]], wanted: list[bool]
) -> tuple[list[tuple[_TargetMaps, np.ndarray] | None], int, int]:
    """Explain the `wanted` ones of `batches` [(positions [T], class ids [T])]: each one's results
    over its distinct targets and every target's row among them (None where not wanted), and the
    counts of non-finite hidden and LM-head values read (the rows of every batch's classes)."""
    sample = layer_sample(sample, settings.layer)  # the logit lens: that layer's states as the hidden states
    blocks, ids = sample.vision_blocks, sample.input_ids
    pool = context_pool(sample.context_positions, sample.answer_positions)
    classes = np.unique(np.concatenate([*(class_ids for _, class_ids in batches), ids[pool]]))
    check_lm_head_covers(sample, classes)
    all_rows, all_bias, bad_rows = _finite_weights(sample, classes)

    v_pos = vision_positions(blocks)
    hidden, bad = decode_hidden(sample, np.concatenate([v_pos, pool]))
    if bad:
        log.warning("sample %r: %d non-finite hidden value(s) (NaN/Inf) treated as 0", sample.id, bad)
    cell_starts, groups, frames = cell_block_starts(blocks), media_groups(blocks), frame_table(blocks)

    # Each batch has its own products over its own classes, so that a batch's results do not
    # depend on which other batches run (BLAS results can depend on the matrix shapes).
    results: list[tuple[_TargetMaps, np.ndarray] | None] = []
    for (positions, class_ids), run in zip(batches, wanted):
        if not run:
            results.append(None)
            continue
        pairs, inverse = _unique_targets(positions, class_ids)
        batch_classes, class_index = np.unique(np.concatenate([pairs[:, 1], ids[pool]]), return_inverse=True)
        take = np.searchsorted(classes, batch_classes)
        rows, bias = all_rows[take], None if all_bias is None else all_bias[take]
        class_maps = activation_maps(hidden[: len(v_pos)], rows, bias)
        pool_logits = class_logits(hidden[len(v_pos) :], rows, bias)
        result = _explain_targets(
            pairs[:, 0],
            class_index[: len(pairs)],
            class_maps,
            pool,
            class_index[len(pairs) :],
            pool_logits,
            cell_starts,
            groups,
            frames,
            settings,
        )
        results.append((result, inverse))
    return results, bad, bad_rows


def _extra_maps(sample: Sample, settings: ExplainSettings, result: _TargetMaps, inverse: np.ndarray) -> dict:
    """candidate_maps, prompt_maps and prompt_relevance (those `settings` asks for) from the
    results of the candidate and prompt batch."""
    n, m = len(sample.answer_positions), len(sample.context_positions)
    extras: dict[str, np.ndarray] = {}
    offset = 0
    if settings.candidates and sample.candidate_ids is not None:
        k = sample.candidate_ids.shape[1]
        extras["candidate_maps"] = result.final[inverse[: n * k]].reshape(n, k, -1)
        offset = n * k
    if settings.prompt:
        prompt_rows = inverse[offset : offset + m]
        pool = context_pool(sample.context_positions, sample.answer_positions)
        extras["prompt_maps"] = result.final[prompt_rows]
        extras["prompt_relevance"] = result.relevance[prompt_rows][:, np.searchsorted(pool, sample.context_positions)]
    return extras


def explain_sample(
    sample: Sample, settings: ExplainSettings | None = None, variant: str | None = None, defer: bool = False
) -> Maps:
    """Compute every map of one sample under `settings` (default: the paper's TAM).

    The answer tokens are one batch of targets and the candidates and prompt tokens another.
    `defer=True` computes the answer maps alone and names the others in `Maps.deferred`, as
    `tamx explain` once stored them (`complete_maps` fills them in, bit-identical).
    """
    settings = settings or ExplainSettings()
    if settings.method != "tam":  # another method of the registry: nothing deferred
        from .methods import compute_maps

        maps = compute_maps(settings.method, sample, settings)
        maps.variant = variant or maps.variant
        return maps
    variant = variant or settings.variant_name()
    answers, context = sample.answer_positions, sample.context_positions
    n = len(answers)
    has_candidates = settings.candidates and sample.candidate_ids is not None
    extras = [name for name, wanted in zip(DEFERRED, (has_candidates, settings.prompt, settings.prompt)) if wanted]
    batches = _target_batches(sample, settings)
    if defer:
        batches = batches[:1]
    results, bad, bad_rows = _explain_batches(sample, settings, batches, [True] * len(batches))

    result, answer_rows = results[0]
    answer_r = result.relevance[answer_rows]
    pool = context_pool(context, answers)
    pool_of_context = np.searchsorted(pool, context)
    pool_of_answers = np.searchsorted(pool, answers[:-1])
    answer_relevance = np.zeros((n, n), dtype=np.float32)
    answer_relevance[:, : n - 1] = answer_r[:, pool_of_answers]
    maps = Maps(
        variant=variant,
        settings=settings.to_json(),
        cam=result.cam[answer_rows],
        eci=result.eci[answer_rows],
        final=result.final[answer_rows],
        scale=result.scale[answer_rows],
        text_relevance=answer_r[:, pool_of_context],
        answer_relevance=answer_relevance,
        nonfinite_hidden=bad,
        nonfinite_lm_head=bad_rows,
        deferred=list(extras) if defer else [],
    )
    if len(results) > 1:
        for name, value in _extra_maps(sample, settings, *results[1]).items():
            setattr(maps, name, value)
    return maps


def load_kernels(settings: ExplainSettings | None = None, compiled: bool = False) -> None:
    """Load (or, the first time on a machine, compile) the numba kernels explain runs under
    `settings`: a process forked afterwards inherits them instead of loading its own. The
    default filter runs in numpy: nothing to load (numba is not even imported), unless
    `compiled`: then its numba twin runs from now on (the same bits, 3x faster, for runs of
    many samples: numba's import and kernels cost some 0.5 s)."""
    settings = settings or ExplainSettings()
    if compiled and settings.filter == "rank-gaussian" and settings.kernel_size == 3:
        load_compiled_3x3()
    filter_maps(np.ones((1, 9), dtype=np.float32), np.array([[0, 3, 3]]), settings.filter, settings.kernel_size)


def _unique_targets(positions: np.ndarray, token_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (position, class id) pairs [T, 2], sorted, and each target's row among them."""
    pairs, inverse = np.unique(np.stack([positions, token_ids], axis=1), axis=0, return_inverse=True)
    return pairs, inverse.ravel()


def complete_maps(sample: Sample, maps: Maps) -> Maps:
    """Fill in the maps a deferred explain left out (candidates, prompt) from the sample and
    the variant's settings, computing only their batch; the stored answer maps are kept.
    For variants stored that way (docs/store.md): a reader that needs those maps calls it on
    what `Run.maps` returns, as the store computes nothing. Returns `maps`."""
    if not maps.deferred:
        return maps
    settings = ExplainSettings.from_json(maps.settings)
    batches = _target_batches(sample, settings)
    results, _, bad_rows = _explain_batches(sample, settings, batches, [False] + [True] * (len(batches) - 1))
    extras = _extra_maps(sample, settings, *results[1]) if len(results) > 1 else {}
    for name in maps.deferred:
        setattr(maps, name, extras.get(name))
    maps.deferred = []
    maps.nonfinite_lm_head = bad_rows  # the rows of every class, now
    return maps
