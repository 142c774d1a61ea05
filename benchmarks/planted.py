"""A controlled benchmark with known truth: planted objects, context interference, noise.

It checks the implementation against the method's own assumptions, and makes no claim about
real models. Synthetic hidden states are built so that, with orthonormal LM-head rows, every
class's map is exactly what we plant (h[v] . w[c] = M_c[v]):

- each object word's map is its object's mask (amplitude 1, mild texture) -- the truth;
- interference: the map of every answer token also carries `leak` times the Eq. 4 estimate
  of its context (the relevance-weighted maps of the earlier tokens), and the text hidden
  states give exactly those relevances, which is the situation ECI assumes;
- salt-and-pepper noise: a fraction `noise` of each map's cells is set to 0 or to 1.5.

The run is written through tamx's store, explained with the variants cam, eci (filter
none), rank-gaussian (no ECI) and tam (and the other filters and ECI-mean), a folder
dataset with the masks is written beside it, and `tamx eval`'s stage scores every variant.

    python benchmarks/planted.py --out /tmp/planted [--samples 24] [--leak 0.8] [--noise 0.12]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tamx.pipeline.eval import EvalResult, evaluate_run  # noqa: E402
from tamx.pipeline.eval.stage import format_table  # noqa: E402
from tamx.pipeline.explain import explain_run  # noqa: E402

from tamx import ExplainSettings, LMHead, Sample, VisionBlock, create_run  # noqa: E402
from tamx.synthetic import TEXT_START, synthetic_run_info, synthetic_special_tokens  # noqa: E402

OBJECTS = ("dog", "cat", "car", "tree", "horse", "bench")
FUNCTION_WORDS = (" a", " the", " and", " there", " its")
PROMPT = ("Write", " a", " caption", " for", " this", " image", ":")
VOCAB = 64
HIDDEN = 96
GRID = 24
MASK_SIZE = 96
VARIANTS = {
    "cam": ExplainSettings(eci="off", filter="none"),
    "eci": ExplainSettings(eci="relevance", filter="none"),
    "rank-gaussian": ExplainSettings(eci="off", filter="rank-gaussian"),
    "tam": ExplainSettings(),
}
MORE_VARIANTS = {
    "median": ExplainSettings(eci="relevance", filter="median"),
    "gaussian": ExplainSettings(eci="relevance", filter="gaussian"),
    "adaptive-median": ExplainSettings(eci="relevance", filter="adaptive-median", kernel_size=5),
    "eci-mean": ExplainSettings(eci="uniform", filter="rank-gaussian"),
}


def _vocabulary() -> dict[str, int]:
    words = list(dict.fromkeys([*PROMPT, *FUNCTION_WORDS, *(" " + o for o in OBJECTS), "."]))
    return {w: TEXT_START + i for i, w in enumerate(words)}


def _masks(rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """`count` disjoint rectangles (7 to 11 cells a side) on the GRID x GRID cell grid."""
    while True:
        taken = np.zeros((GRID, GRID), bool)
        masks = []
        for _ in range(200):
            h, w = rng.integers(7, 12, size=2)
            y, x = rng.integers(0, GRID - h + 1), rng.integers(0, GRID - w + 1)
            if not taken[max(y - 1, 0) : y + h + 1, max(x - 1, 0) : x + w + 1].any():
                mask = np.zeros((GRID, GRID), bool)
                mask[y : y + h, x : x + w] = True
                masks.append(mask)
                taken |= mask
                if len(masks) == count:
                    return masks


def _salt_and_pepper(rng: np.random.Generator, values: np.ndarray, fraction: float) -> np.ndarray:
    hit = rng.random(values.shape) < fraction
    return np.where(hit, np.where(rng.random(values.shape) < 0.5, 0.0, 1.5), values)


def lm_head_rows(classes: list[int]) -> dict[int, np.ndarray]:
    """Orthonormal LM-head rows, one per class, the same for every sample (a run has one head):
    h . w[c] is exactly the coefficient of w[c] in h."""
    basis, _ = np.linalg.qr(np.random.default_rng(12345).standard_normal((HIDDEN, len(classes))))
    return {c: basis[:, i] for i, c in enumerate(classes)}


def planted_sample(sample_id: str, seed: int, leak: float, noise: float) -> tuple[Sample, dict[str, np.ndarray]]:
    """One sample with planted maps, and the masks (cell grid) of its objects by name."""
    rng = np.random.default_rng(seed)
    vocab = _vocabulary()
    special = synthetic_special_tokens(VOCAB)
    names = list(rng.choice(OBJECTS, size=3, replace=False))
    masks = dict(zip(names, _masks(rng, 3)))
    answer = [" a", " " + names[0], " and", " a", " " + names[1], " and", " the", " " + names[2], " there", "."]
    ids = [special["turn_start"], 1, special["vision_start"]]
    start = len(ids)
    ids += [special["image_token"]] * GRID * GRID + [special["vision_end"]]
    context = np.arange(len(ids), len(ids) + len(PROMPT))
    ids += [vocab[w] for w in PROMPT] + [special["turn_end"], special["turn_start"], 2]
    answers = np.arange(len(ids), len(ids) + len(answer))
    ids += [vocab[w] for w in answer]

    classes = sorted(vocab.values())
    row = lm_head_rows(classes)
    object_ids = {vocab[" " + name] for name in OBJECTS}
    planted: dict[int, np.ndarray] = {}  # class -> map [GRID*GRID]
    texture = 1.0 + 0.1 * rng.standard_normal(GRID * GRID)
    # r[k, c] = h[q_k] . w[c]: later tokens relate to the objects named before them.
    relevance = rng.uniform(0.0, 0.05, size=(len(ids), len(classes)))
    for p in answers.tolist():
        if ids[p] in object_ids:
            relevance[p] = rng.uniform(0.5, 1.0, size=len(classes))
    order = [*context.tolist(), *answers.tolist()]
    for index, position in enumerate(order):
        cls = ids[position]
        if cls in planted:
            continue
        word = answer[index - len(PROMPT)] if index >= len(PROMPT) else PROMPT[index]
        own = masks[word.strip()].ravel() * texture if word.strip() in masks else np.zeros(GRID * GRID)
        earlier = [p for p in order[:index] if ids[p] != cls]
        if index >= len(PROMPT) and earlier:
            weights = np.array([relevance[p, classes.index(cls)] for p in earlier])
            estimate = (weights / weights.sum()) @ np.stack([planted[ids[p]] for p in earlier])
            own = own + leak * estimate
        planted[cls] = np.maximum(_salt_and_pepper(rng, own, noise), 0.0)

    hidden = np.zeros((len(ids) - 1, HIDDEN))
    for c, values in planted.items():
        hidden[start : start + GRID * GRID] += values[:, None] * row[c][None, :]
    for p in order[:-1]:
        hidden[p] = sum(relevance[p, i] * row[c] for i, c in enumerate(classes))
    tokens = [f"<{i}>" for i in ids]
    for p in order:
        tokens[p] = next(w for w, i in vocab.items() if i == ids[p])
    sample = Sample(
        id=sample_id,
        hidden=hidden.astype(np.float32),
        input_ids=np.array(ids),
        vision_blocks=(VisionBlock(start=start, grid=(1, GRID, GRID)),),
        answer_positions=answers,
        context_positions=context,
        lm_head=LMHead(ids=np.array(classes), rows=np.stack([row[c] for c in classes]).astype(np.float32)),
        tokens=tokens,
        messages=[{"role": "user", "content": [{"type": "text", "text": "".join(PROMPT)}]}],
    )
    return sample, masks


def build(
    out: Path, samples: int, leak: float, noise: float, seed: int = 0, variants: Sequence[str] | None = None
) -> tuple[Path, Path]:
    """Write the run, explained with `variants` (default: VARIANTS), and the folder dataset
    under `out`; return their paths."""
    run_path, data = out / "run", out / "data"
    run = create_run(run_path, synthetic_run_info(VOCAB))
    data.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(samples):
        sample_id = f"planted-{i:03d}"
        sample, masks = planted_sample(sample_id, seed * 100_003 + i, leak, noise)
        run.write_sample(sample)
        label = np.zeros((GRID, GRID), np.uint8)
        categories = {}
        for value, (name, mask) in enumerate(masks.items(), start=1):
            label[mask] = value
            categories[name] = value
        label = cv2.resize(label, (MASK_SIZE, MASK_SIZE), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(data / f"{sample_id}.png"), label)
        cv2.imwrite(str(data / f"{sample_id}.jpg"), np.zeros((MASK_SIZE, MASK_SIZE, 3), np.uint8))
        entries.append({"id": sample_id, "image": f"{sample_id}.jpg", "label": f"{sample_id}.png",
                        "categories": categories, "caption": ""})  # fmt: skip
    (data / "anno.json").write_text(json.dumps(entries))
    every = VARIANTS | MORE_VARIANTS
    for variant in variants or VARIANTS:
        explain_run(run_path, every[variant], variant)
    return run_path, data


def evaluate(
    out: Path, samples: int, leak: float, noise: float, seed: int = 0, variants: Sequence[str] | None = None
) -> EvalResult:
    """Build, explain and score a planted benchmark; returns the EvalResult."""
    run_path, data = build(out, samples, leak, noise, seed, variants)
    return evaluate_run(run_path, "folder", data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="empty folder for the runs and data")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--leak", type=float, default=0.8)
    parser.add_argument("--noise", type=float, default=0.12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    settings = [("both effects", args.leak, args.noise), ("no interference", 0.0, args.noise),
                ("no noise", args.leak, 0.0)]  # fmt: skip
    for title, leak, noise in settings:
        name = title.replace(" ", "-")
        variants = [*VARIANTS, *MORE_VARIANTS] if title == "both effects" else list(VARIANTS)
        result = evaluate(args.out / name, args.samples, leak, noise, args.seed, variants)
        print(f"\n## {title}: leak {leak}, noise {noise}, {args.samples} samples\n")
        print(format_table(result))


if __name__ == "__main__":
    main()
