"""The faithfulness stage: perturb each sample's image along a map's cell order, re-run the model
teacher-forced on the same prompt and answer, record the explained token's probability.

Deletion replaces the top cells' pixels with a baseline in `steps` equal fractions; insertion
starts from the image with every seen cell replaced and restores them in the same order. The
controls are scored the same way: random orders (mean of `random_orders`, seeded) and, with a
dataset, the ground-truth mask as the map. docs/faithfulness.md has the protocol.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
import torch

from tamx import open_run
from tamx.errors import TamxError
from tamx.faithfulness import (
    BASELINES,
    WORDS,
    Faithfulness,
    cell_order,
    cell_regions,
    fractions,
    random_order,
    rank_images,
    step_counts,
    step_images,
)
from tamx.layout import map_frames
from tamx.pos import FUNCTION
from tamx.records import Sample

from ..files import writing
from ..outcomes import Outcome, StageReport
from ..ranks import rank_and_size, torchrun_group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaithfulnessSettings:
    """steps: fractions 0, 1/steps, ..., 1; baseline: what replaces a cell's pixels; random_orders:
    how many random orders the random control averages; seed: of the random orders and ties;
    words: "content" (every word but function words and punctuation) or "all" answer tokens."""

    steps: int = 10
    baseline: str = "blur"
    random_orders: int = 3
    seed: int = 0
    words: str = "content"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class FaithfulnessReport(StageReport):
    """Samples done, skipped (every asked variant stored) and failed; forward passes (images scored).
    Under torchrun rank 0's report is the whole job's (`ranks` > 1: the ranks' outcomes and images
    together, the longest rank's seconds); another rank's is its own shard's."""

    seconds: float = 0.0
    forward_images: int = 0
    forward_seconds: float = 0.0
    rank: int = 0
    ranks: int = 1


def baseline_image(image: np.ndarray, kind: str) -> np.ndarray:
    """What replaces a removed cell: a strong Gaussian blur (sigma = 1/20 of the longer side), the
    image's mean colour, or black: [H, W, 3] uint8."""
    if kind == "blur":
        sigma = max(image.shape[:2]) / 20
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    if kind == "mean":
        return np.broadcast_to(image.reshape(-1, image.shape[-1]).mean(axis=0).round().astype(np.uint8), image.shape)
    return np.zeros_like(image)


def decode_images(sample: Sample) -> dict[tuple[str, int, int | None], np.ndarray]:
    """The sample's stored images as RGB arrays, by (kind, media, frame): ("image", item, None) for
    an image, ("video", item, k) for the k-th stored (sampled) frame of a video, in stored order."""
    images = {}
    for key, media in zip(decode_keys(sample), sample.media or []):
        pixels = cv2.imdecode(np.frombuffer(media.data, np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:
            raise TamxError(f"its stored {media.kind} {media.item} does not decode ({media.mime}); re-encode it")
        images[key] = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return images


def decode_keys(sample: Sample) -> Iterator[tuple[str, int, int | None]]:
    """The keys `decode_images` gives the sample's stored images, in stored order (nothing decoded)."""
    frames: dict[int, int] = {}
    for media in sample.media or []:
        if media.kind == "video-frame":
            frames[media.item] = frames.get(media.item, -1) + 1
            yield ("video", media.item, frames[media.item])
        else:
            yield (media.kind, media.item, media.frame)


def video_frames(sample: Sample) -> dict[int, list[int]]:
    """The source frame index of each stored (sampled) frame of every video, by media item."""
    frames: dict[int, list[int]] = {}
    for media in sample.media or []:
        if media.kind == "video-frame":
            frames.setdefault(media.item, []).append(-1 if media.frame is None else media.frame)
    return frames


@dataclass(frozen=True)
class MediaLayout:
    """How the images of `CellRegions.items` make the processor's media, as encode gave them:
    per stored media item in order, its kind, the indices of its image (or of its video's sampled
    frames, in sampling order) in that list, and for a video its source frame indices and fps."""

    kinds: list[str]
    parts: list[list[int]]
    frame_indices: list[tuple[int, ...]]
    fps: list[float | None]

    @classmethod
    def of(cls, sample: Sample, items: list[tuple[str, int, int | None]]) -> MediaLayout:
        """The layout of `sample` over `items`; TamxError where a stored image lies on no vision block."""
        where = {key: index for index, key in enumerate(items)}
        keys = list(decode_keys(sample))
        missing = [key for key in keys if key not in where]
        if missing:
            raise TamxError(f"its stored {missing[0][0]} {missing[0][1]} lies on no vision block; re-encode it")
        media = sorted({key[1] for key in keys})
        frames = video_frames(sample)
        rates = (sample.meta or {}).get("video_fps")
        rates = rates if isinstance(rates, list) else []
        kinds, parts, indices, fps = [], [], [], []
        videos = 0
        for item in media:
            mine = [key for key in keys if key[1] == item]
            kinds.append(mine[0][0])
            parts.append([where[key] for key in mine])
            indices.append(tuple(frames.get(item, ())))
            if mine[0][0] == "video":
                rate = rates[videos] if videos < len(rates) else None
                fps.append(float(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None)
                videos += 1
            else:
                fps.append(None)
        return cls(kinds, parts, indices, fps)

    def media(self, images: Sequence[np.ndarray]) -> list[Any]:
        """The processor's media items (`MediaItem`) with these images (aligned with the items)."""
        from ..encode.inputs import MediaItem

        out = []
        for kind, part, indices, fps in zip(self.kinds, self.parts, self.frame_indices, self.fps):
            if kind == "video":
                pixels = np.stack([images[i] for i in part])
                total = max(indices) + 1 if indices else len(part)
                out.append(MediaItem("video", "", pixels, indices, fps, total))
            else:
                out.append(MediaItem(kind, "", images[part[0]]))
        return out


class Scorer:
    """Teacher-forced probabilities of a sample's answer tokens for sets of perturbed images."""

    def __init__(self, model: torch.nn.Module, processor: Any, batch_size: int, share: bool = True) -> None:
        from ..encode.adapters import adapter_for

        self.adapter = adapter_for(model, processor)
        self.model, self.processor, self.batch_size, self.share = model, processor, batch_size, share
        self.images = 0
        self.seconds = 0.0

    def prompt_ids(self, prompt: str, images: list[np.ndarray], layout: MediaLayout | None = None) -> np.ndarray:
        """The processor's ids of the prompt with these images (no forward pass)."""
        return self._process([prompt], [images], layout)["input_ids"][0].numpy()

    def _process(self, prompts: list[str], images: list[list[np.ndarray]], layout: MediaLayout | None = None) -> Any:
        """The processor's outputs as encode calls it (`processor_call`): each prompt's images
        made into its media by `layout` (None: every array is an image)."""
        from ..encode.inputs import MediaItem
        from ..encode.record import processor_call

        bos = self.adapter.tokenizer.bos_token
        per_prompt = [
            layout.media(found) if layout is not None else [MediaItem("image", "", image) for image in found]
            for found in images
        ]
        flat = [item for items in per_prompt for item in items]
        if any(m.kind == "video" for m in flat) and getattr(self.processor, "video_processor", None) is None:
            raise TamxError(
                f"its video needs the {type(self.processor).__name__} video processor, which needs torchvision; "
                "install torchvision (pip install torchvision)"
            )
        return processor_call(
            self.adapter, prompts, flat, not (bos and prompts[0].startswith(bos)), per_prompt=per_prompt
        )

    def score(
        self, sample: Sample, prompt: str, image_sets: Sequence[list[np.ndarray]], layout: MediaLayout | None = None
    ) -> np.ndarray:
        """p of every answer token at its position for each image set: [len(image_sets), N] float32
        (layout: how a set's images make the sample's images and videos; None: every one an image)."""
        answer_ids = sample.input_ids[sample.answer_positions]
        n = len(answer_ids)
        out = np.zeros((len(image_sets), n), np.float32)
        model = self.model
        for start in range(0, len(image_sets), self.batch_size):
            chunk = [list(s) for s in image_sets[start : start + self.batch_size]]
            began = time.perf_counter()
            processed = self._process([prompt] * len(chunk), chunk, layout)
            ids = processed["input_ids"].numpy()
            if ids.shape[1] != sample.answer_positions[0] or not (ids == sample.input_ids[: ids.shape[1]]).all():
                raise TamxError("the processor's prompt tokens differ from the stored ones: is this the run's model?")
            inputs = {}
            for key, value in self.adapter.model_inputs(processed).items():
                if isinstance(value, torch.Tensor):
                    value = value.to(model.device)
                    value = value.to(model.dtype) if value.is_floating_point() else value
                inputs[key] = value
            extra = torch.as_tensor(np.repeat(answer_ids[None], len(chunk), 0), device=model.device)
            inputs = self.adapter.extend_inputs(inputs, extra.to(inputs["input_ids"].dtype))
            with torch.inference_mode():
                logits = model(**inputs, use_cache=False, logits_to_keep=n + 1).logits[:, :n].float()
                cap = self.adapter.logit_softcap()
                logits = torch.tanh(logits / cap) * cap if cap else logits
                logp = torch.log_softmax(logits, dim=-1).gather(2, extra.view(len(chunk), n, 1).long())[..., 0]
            out[start : start + len(chunk)] = logp.exp().cpu().numpy()
            self.images += len(chunk)
            self.seconds += time.perf_counter() - began
        return out


def explained_tokens(sample: Sample, words: str, tagger: Any, categories: dict[str, set[str]]) -> list[tuple]:
    """(answer-token indices, category or None) of each explained word: every token of every content
    word ("content": not a function word, holding a letter) or of every word ("all")."""
    from ..eval.stage import answer_words

    chosen = []
    for word in answer_words(sample, tagger, categories):
        if words == "content" and (word.kind == FUNCTION or not any(c.isalpha() for c in word.text)):
            continue
        chosen.append((word.tokens, word.category))
    return chosen


def _curves(
    scorer: Scorer,
    sample: Sample,
    prompt: str,
    images: list[np.ndarray],
    deleted: list[np.ndarray],
    regions: Any,
    orders: list[np.ndarray],
    steps: int,
    layout: MediaLayout | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion p [len(orders), steps - 1, N] at the inner steps 1..steps-1 of each order.

    A step's image depends only on which cells it has replaced (deletion) or restored (insertion),
    not on their order, so the steps of all orders that perturb the same set of cells (two tokens
    whose maps share their top cells, a colour and a shape word of one object) are one image, scored
    once (`scorer.share`; off, every order's every step is scored on its own)."""
    counts = step_counts(int(regions.seen.sum()), steps)[1:-1]
    n = len(sample.answer_positions)
    if not len(counts) or not orders:
        return np.zeros((len(orders), 0, n), np.float32), np.zeros((len(orders), 0, n), np.float32)
    # which image each (order, direction, step) shows: (direction, the sorted cells perturbed)
    slots: dict[tuple, int] = {}
    where = np.zeros((len(orders), 2, len(counts)), np.int64)
    made: list[tuple[int, int, int]] = []  # (order, direction, step) that first made each image
    for o, order in enumerate(orders):
        for direction in (0, 1):
            for j, count in enumerate(counts.tolist()):
                key = (direction, np.sort(order[:count]).tobytes()) if scorer.share else (o, direction, j)
                if key not in slots:
                    slots[key] = len(made)
                    made.append((o, direction, j))
                where[o, direction, j] = slots[key]
    sets: list[list[np.ndarray]] = [[] for _ in made]
    by_order: dict[int, list[int]] = {}
    for index, (o, _, _) in enumerate(made):
        by_order.setdefault(o, []).append(index)
    for o, indices in by_order.items():
        ranks = rank_images(regions, orders[o])
        for index in indices:
            _, direction, j = made[index]
            pairs = zip(images, deleted, ranks)
            if direction == 0:
                sets[index] = [step_images(img, gone, rank, counts[j : j + 1])[0] for img, gone, rank in pairs]
            else:
                sets[index] = [step_images(gone, img, rank, counts[j : j + 1])[0] for img, gone, rank in pairs]
    p = scorer.score(sample, prompt, sets, layout=layout)[where]
    return p[:, 0], p[:, 1]


def _full_curve(full: np.ndarray, inner: np.ndarray, end: np.ndarray) -> np.ndarray:
    """[T, S]: p(0), the inner steps, p(1)."""
    return np.concatenate([full[:, None], inner, end[:, None]], axis=1).astype(np.float32)


def faithfulness_sample(
    scorer: Scorer,
    run: Any,
    sample_id: str,
    variants: Sequence[str],
    settings: FaithfulnessSettings,
    tagger: Any,
    record: Any = None,
) -> dict[str, Faithfulness]:
    """The faithfulness records of `variants` of one sample (record: its dataset record, for the mask control)."""
    from tamx.pointing import cell_cover
    from tamx.pos import category_lemmas

    version = run.sample_version(sample_id)
    sample = run.sample(sample_id)
    images_by_key = decode_images(sample)
    answers = sample.answer_positions
    if not np.array_equal(answers, np.arange(answers[0], len(sample.input_ids))):
        raise TamxError("its answer is not the end of its sequence; faithfulness teacher-forces prompt + answer")
    prompt = (sample.meta or {}).get("prompt")
    if not isinstance(prompt, str):
        raise TamxError("its meta holds no rendered prompt; re-encode it with tamx encode")
    sizes = {key: (img.shape[1], img.shape[0]) for key, img in images_by_key.items()}
    try:
        regions = cell_regions(sample.vision_blocks, sizes, video_frames(sample))
    except KeyError as exc:
        raise TamxError(f"its stored media lack the image {exc.args[0]}; re-encode it") from None
    except ValueError as exc:
        raise TamxError(f"its stored frames do not fit its vision blocks ({exc}); re-encode it") from None
    images = [images_by_key[key] for key in regions.items]
    layout = MediaLayout.of(sample, regions.items)
    base = [baseline_image(img, settings.baseline) for img in images]
    everything = np.arange(len(regions.item))[regions.seen]
    ranks = rank_images(regions, everything)
    deleted = [np.where((r < len(everything))[..., None], b, img) for img, b, r in zip(images, base, ranks)]
    masks = record.masks() if record is not None else {}
    categories = {}
    if record is not None:
        categories = {n: ls for n, ls in category_lemmas(record.categories).items() if n in masks}
    words = explained_tokens(sample, settings.words, tagger, categories)
    tokens = np.array([t for word_tokens, _ in words for t in word_tokens], np.int64)
    token_category = [c for word_tokens, c in words for _ in word_tokens]
    steps = settings.steps
    ends = scorer.score(sample, prompt, [images, deleted], layout=layout)
    full, gone = ends[0][tokens], ends[1][tokens]
    # every order of this sample (random, mask, each variant's per token) in one batched scoring
    rng = np.random.default_rng([settings.seed, 0])
    orders = [random_order(regions.seen, rng) for _ in range(settings.random_orders)]
    mask_orders: dict[str, int] = {}
    if record is not None:
        frames = map_frames(sample.vision_blocks)
        for category in sorted({c for c in token_category if c is not None}):
            mask = masks[category]
            if any(b.kind == "video" for b in sample.vision_blocks):
                log.warning("sample %r: a mask is one image's, not a video's; no mask control", sample_id)
                break
            if mask.shape != images[0].shape[:2]:
                log.warning("sample %r: the %s mask is not the image's size; no mask control", sample_id, category)
                continue
            order = cell_order(cell_cover(mask, frames), regions.seen, np.random.default_rng([settings.seed, 1]))
            same = next((i for c, i in mask_orders.items() if np.array_equal(orders[i], order)), None)
            mask_orders[category] = len(orders) if same is None else same  # a colour and a shape of one object
            if same is None:
                orders.append(order)
    variant_orders: dict[str, int] = {}
    for variant in variants:
        final = run.maps(sample_id, variant).final
        variant_orders[variant] = len(orders)
        for token in tokens.tolist():
            orders.append(cell_order(final[token], regions.seen, np.random.default_rng([settings.seed, 2, token])))
    dele, ins = _curves(scorer, sample, prompt, images, deleted, regions, orders, steps, layout)
    randoms = slice(0, settings.random_orders)
    random_deletion = _full_curve(full, dele[randoms].mean(axis=0)[:, tokens].T, gone)
    random_insertion = _full_curve(gone, ins[randoms].mean(axis=0)[:, tokens].T, full)
    mask_deletion = mask_insertion = None
    if record is not None:
        mask_deletion = np.full((len(tokens), steps + 1), np.nan, np.float32)
        mask_insertion = mask_deletion.copy()
        for category, index in mask_orders.items():
            rows = [k for k, c in enumerate(token_category) if c == category]
            mask_deletion[rows] = _full_curve(full[rows], dele[index][:, tokens[rows]].T, gone[rows])
            mask_insertion[rows] = _full_curve(gone[rows], ins[index][:, tokens[rows]].T, full[rows])
    out = {}
    rows = np.arange(len(tokens))
    for variant in variants:
        picked = variant_orders[variant] + rows
        deletion = _full_curve(full, dele[picked, :, tokens], gone)
        insertion = _full_curve(gone, ins[picked, :, tokens], full)
        out[variant] = Faithfulness(
            variant=variant,
            settings={**settings.to_json(), "model_id": run.info.model_id, "sample_version": version},
            tokens=tokens,
            fractions=fractions(steps),
            full=full,
            baseline=gone,
            deletion=deletion,
            insertion=insertion,
            random_deletion=random_deletion,
            random_insertion=random_insertion,
            mask_deletion=mask_deletion,
            mask_insertion=mask_insertion,
        )
    return out


def _same_model(run_model: str, model_id: str) -> bool:
    """Whether `model_id` names the model the run was encoded with (as encode names it, or its folder)."""
    from ..demo import resolve_model
    from ..encode.stage import model_name

    names = {model_id, model_name(model_id), model_name(resolve_model(model_id))}
    return run_model in ("unknown", "") or run_model in names


def check_request(run: Any, ids: Sequence[str], variants: Sequence[str] | None, model_id: str) -> list[str]:
    """Refuse what cannot be scored before any model loads: another model than the run's, an
    unknown variant, samples without stored images. Returns the variants to score."""
    if not ids:
        raise TamxError(f"{run.url} holds no sample; encode some with tamx encode")
    if not _same_model(run.info.model_id, model_id):
        raise TamxError(
            f"{run.url} was encoded with model {run.info.model_id!r}, not {model_id!r}; "
            f"give --model {run.info.model_id} (the probabilities must come from the model that made the maps)"
        )
    stored = sorted({v for sample_id in ids for v in run.variants(sample_id)})
    if not stored:
        raise TamxError(f"{run.url} has no maps; run `tamx explain {run.url}` first")
    chosen = stored if not variants else list(dict.fromkeys(variants))
    unknown = [v for v in chosen if v not in stored]
    if unknown:
        raise TamxError(f"no variant {', '.join(map(repr, unknown))} in {run.url} (stored: {', '.join(stored)})")
    bare = [sample_id for sample_id in ids if not run.sample_attrs(sample_id).get("media")]
    if bare:
        raise TamxError(
            f"{len(bare)} sample(s) of {run.url} store no image (first: {bare[0]!r}); faithfulness re-runs the "
            "model on the images, so encode them with tamx encode (it stores them) or import files that carry media"
        )
    return chosen


def in_torchrun_group(run: Callable[..., FaithfulnessReport]) -> Callable[..., FaithfulnessReport]:
    """Run `run` inside the torchrun process group (`pipeline.ranks.torchrun_group`, on the device
    asked for); a plain call without torchrun is unchanged."""

    @functools.wraps(run)
    def joined_run(*args: Any, **kwargs: Any) -> FaithfulnessReport:
        from ..encode.loading import resolve_device

        with torchrun_group(resolve_device(kwargs.get("device", "auto"))):
            return run(*args, **kwargs)

    return joined_run


@in_torchrun_group
def faithfulness_run(
    run_path: str | os.PathLike,
    model_id: str,
    *,
    variants: Sequence[str] | None = None,
    settings: FaithfulnessSettings | None = None,
    dataset: str | None = None,
    data: str | os.PathLike | None = None,
    device: str = "auto",
    dtype: str = "auto",
    batch_size: int = 8,
    overwrite: bool = False,
    sample_ids: Sequence[str] | None = None,
    wrap: Callable[[Iterator[str], int], Iterator[str]] | None = None,
    model: torch.nn.Module | None = None,
    processor: Any = None,
    share_images: bool = True,
) -> FaithfulnessReport:
    """Score `variants` (default: every stored one) of the run's samples; store a record per sample
    and variant. Finished ones are skipped (resume) unless `overwrite`. Under torchrun each rank
    takes a shard of the samples. `model`/`processor`: already loaded (else loaded from model_id).
    `share_images`: score an image that several orders' steps show once (False: each on its own,
    the same curves at many times the cost; for checking)."""
    from tamx.datasets import category_names, load_dataset
    from tamx.pos import Tagger, category_lemmas

    started = time.perf_counter()
    settings = settings or FaithfulnessSettings()
    if settings.baseline not in BASELINES or settings.words not in WORDS or settings.steps < 2:
        raise TamxError(f"bad faithfulness settings {settings}")
    run = open_run(run_path, mode="a")
    ids = run.sample_ids() if sample_ids is None else list(sample_ids)
    chosen = check_request(run, ids, variants, model_id)
    records: dict[str, Any] = {}
    category_words: set[str] = set()
    if dataset is not None:
        records = {r.id: r for r in load_dataset(dataset, data)}
        category_words = {w for ws in category_lemmas(category_names(list(records.values()))).values() for w in ws}
    tagger = Tagger("rules", category_words)
    rank, world = rank_and_size()
    report = FaithfulnessReport()
    todo: list[tuple[str, list[str]]] = []
    for sample_id in ids[rank::world]:
        have = set(run.variants(sample_id))
        done = set() if overwrite else set(run.faithfulness_variants(sample_id))
        missing = [v for v in chosen if v in have and v not in done]
        if missing:
            todo.append((sample_id, missing))
        else:
            report.add(Outcome.skipped(sample_id))
    log.info(
        "rank %d of %d: %d sample(s) to score, %d already stored; %d torch thread(s)",
        rank, world, len(todo), len(report.skipped), torch.get_num_threads(),
    )  # fmt: skip
    if todo and model is None:
        from ..encode.loading import load_model, load_processor

        model = load_model(model_id, device=device, dtype=dtype)
        processor = load_processor(model_id)
    scorer = Scorer(model, processor, batch_size, share_images) if todo else None
    wanted = dict(todo)
    stream: Iterator[str] = iter(wanted)
    for sample_id in wrap(stream, len(wanted)) if wrap else stream:
        try:
            found = faithfulness_sample(
                scorer, run, sample_id, wanted[sample_id], settings, tagger, records.get(sample_id)
            )
            for record in found.values():
                with writing(f"the faithfulness of sample {sample_id!r} into {run.url}"):
                    run.write_faithfulness(
                        sample_id, record, overwrite=True, sample_version=record.settings["sample_version"]
                    )
        except (TamxError, ValueError, RuntimeError, OSError) as exc:
            log.debug("sample %s failed", sample_id, exc_info=True)
            report.add(Outcome.failed(sample_id, str(exc)))
            continue
        report.add(Outcome.done(sample_id))
    if scorer is not None:
        report.forward_images, report.forward_seconds = scorer.images, scorer.seconds
    report.seconds = time.perf_counter() - started
    report.rank, report.ranks = rank, world
    return _whole_job(report) if world > 1 and torch.distributed.is_initialized() else report


def _whole_job(report: FaithfulnessReport) -> FaithfulnessReport:
    """Rank 0: every rank's report in one (waits for all ranks); another rank: its own."""
    reports: list[FaithfulnessReport | None] = [None] * report.ranks
    torch.distributed.all_gather_object(reports, report)
    if report.rank != 0:
        return report
    whole = FaithfulnessReport(rank=0, ranks=report.ranks)
    for part in reports:
        whole.done += part.done
        whole.skipped += part.skipped
        whole.failed.update(part.failed)
        whole.forward_images += part.forward_images
        whole.forward_seconds = max(whole.forward_seconds, part.forward_seconds)  # the ranks run at once
        whole.seconds = max(whole.seconds, part.seconds)
    return whole
