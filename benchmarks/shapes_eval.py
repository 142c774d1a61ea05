"""Ground-truth benchmark on the shapes world: generate -> encode -> explain -> eval, with true masks.

A held-out set of shapes-world scenes (`tamx.shapes`, a seed the training never draws) is written
as a `folder` dataset, encoded with the bundled toy VLM (or --model), teacher-forced on the true
caption so that every colour and shape word is scored, explained with the variants cam (neither
module), eci (ECI, no filter), rank-gaussian (the filter, no ECI) and tam, and scored by
`tamx eval`'s stage. On top of eval's table it reports, per word class (colour, shape, function
word), Obj-IoU / Func-IoU / F1-IoU, the pointing accuracy (the peak cell of a word's map lies on
its object: the object covers at least a quarter of that cell), chance pointing (the share of
cells that count as on the object) and the IoU of the all-objects mask with each object's mask.

    python benchmarks/shapes_eval.py --out /tmp/shapes-eval [--samples 200] [--seed 1000] [--model PATH]

The same numbers from the command line: `tamx eval RUN --dataset folder --data OUT/data`.
A toy model is not a real VLM: these numbers check the pipeline end to end, not the method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx import ExplainSettings, open_run
from tamx.datasets import load_dataset
from tamx.shapes import COLOURS, FUNCTION_WORDS, SHAPES, write_folder_dataset

VARIANTS = {
    "cam": ExplainSettings(eci="off", filter="none", candidates=False, prompt=False),
    "eci": ExplainSettings(filter="none", candidates=False, prompt=False),
    "rank-gaussian": ExplainSettings(eci="off", candidates=False, prompt=False),
    "tam": ExplainSettings(candidates=False, prompt=False),
}
COVER = 0.25


def word_class(word: str) -> str | None:
    word = word.strip().strip(".").lower()
    if word in COLOURS:
        return "colour"
    if word in SHAPES:
        return "shape"
    if word in FUNCTION_WORDS:
        return "function"
    return None


def cell_cover(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The share of each cell [H, W] that the mask covers."""
    h, w = grid
    return mask.reshape(h, mask.shape[0] // h, w, mask.shape[1] // w).mean(axis=(1, 3))


def pointing(run_path: Path, data: Path, tokenizer) -> dict:
    """Per variant and word class: pointing hits, chance, and the all-objects IoU baseline."""
    records = {r.id: r for r in load_dataset("folder", data)}
    run = open_run(run_path)
    hits: dict[tuple[str, str], list[float]] = defaultdict(list)
    top1: dict[str, list[float]] = defaultdict(list)
    chance: dict[str, list[float]] = defaultdict(list)
    union_iou: list[float] = []
    for sample_id in run.sample_ids():
        sample = run.sample(sample_id, media=False)
        masks = records[sample_id].masks()
        union = np.any(np.stack(list(masks.values())), axis=0)
        (block,) = sample.vision_blocks
        grid = tuple(int(v) for v in block.grid[1:])
        tokens = tokenizer.convert_ids_to_tokens(sample.input_ids[sample.answer_positions].tolist())
        maps = {v: run.maps(sample_id, v).tam for v in VARIANTS}
        answer_ids = sample.input_ids[sample.answer_positions]
        for i, token in enumerate(tokens):
            word = tokenizer.convert_tokens_to_string([token]).strip()
            kind = word_class(word)
            top1[kind or "other"].append(float(sample.candidate_ids[i, 0] == answer_ids[i]))
            if kind not in ("colour", "shape"):
                continue
            cover = cell_cover(masks[word], grid) >= COVER
            chance[kind].append(float(cover.mean()))
            union_iou.append(float(masks[word].sum() / union.sum()))
            for variant, m in maps.items():
                cell = m[i].reshape(grid)
                hits[(variant, kind)].append(float(cell.max() > 0 and cover.flat[int(np.argmax(cell))]))
    return {
        "pointing": {f"{v}/{k}": float(np.mean(x)) for (v, k), x in hits.items()},
        "chance": {k: float(np.mean(x)) for k, x in chance.items()},
        "all_objects_iou": float(np.mean(union_iou)),
        "words": {k: len(x) for k, x in chance.items()},
        "teacher_forced_top1": {k: float(np.mean(x)) for k, x in top1.items()},
    }


def per_class(result) -> dict:
    """Obj-IoU of colour and shape words, Func-IoU of function words, F1-IoU per class, per variant."""
    rows = {}
    for variant in result.variants():
        obj: dict[str, list[float]] = defaultdict(list)
        for entry in result.objects[variant]:
            obj[word_class(entry.category)].append(entry.iou)
        func = [f.score for f in result.functions[variant]]
        f_mean = float(np.mean(func)) if func else float("nan")
        row = {"func_iou": f_mean, "func_words": len(func)}
        for kind in ("colour", "shape"):
            o = float(np.mean(obj[kind])) if obj[kind] else float("nan")
            row[f"{kind}_obj_iou"] = o
            row[f"{kind}_f1_iou"] = 2 * o * f_mean / (o + f_mean) if o + f_mean > 0 else 0.0
            row[f"{kind}_words"] = len(obj[kind])
        for word in FUNCTION_WORDS:
            scores = [f.score for f in result.functions[variant] if f.word.strip().lower() == word]
            row[f"func_iou_{word}"] = float(np.mean(scores)) if scores else float("nan")
        s = result.summaries[variant]
        row.update(obj_iou=s.obj_iou, f1_iou=s.f1_iou)
        rows[variant] = row
    return rows


def table(classes: dict, points: dict) -> str:
    head = (
        f"{'variant':15}{'colour Obj':>11}{'shape Obj':>10}{'Func':>7}{'Func a':>8}{'Func and':>9}"
        f"{'colour F1':>10}{'shape F1':>9}{'all F1':>8}{'point col':>10}{'point shp':>10}"
    )
    lines = [head, "-" * len(head)]
    for variant, r in classes.items():
        lines.append(
            f"{variant:15}{100 * r['colour_obj_iou']:11.2f}{100 * r['shape_obj_iou']:10.2f}{100 * r['func_iou']:7.2f}"
            f"{100 * r['func_iou_a']:8.2f}{100 * r['func_iou_and']:9.2f}{100 * r['colour_f1_iou']:10.2f}"
            f"{100 * r['shape_f1_iou']:9.2f}{100 * r['f1_iou']:8.2f}"
            f"{points['pointing'][f'{variant}/colour']:10.3f}{points['pointing'][f'{variant}/shape']:10.3f}"
        )
    lines.append(
        f"chance pointing: colour {points['chance']['colour']:.3f}, shape {points['chance']['shape']:.3f}; "
        f"all-objects mask IoU with each object: {100 * points['all_objects_iou']:.2f}"
    )
    lines.append(
        "teacher-forced top-1 accuracy: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(points["teacher_forced_top1"].items()))
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000, help="scene seed (training draws other streams)")
    parser.add_argument("--model", default=None, help="model folder or id (default: the bundled toy model)")
    args = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from pipeline.demo.run import MODEL_DIR
    from pipeline.encode import EncodeInput, EncodeSettings, encode_path
    from pipeline.eval import evaluate_run, write_results
    from pipeline.eval.manifests import manifest_lines
    from pipeline.eval.stage import format_table
    from pipeline.explain import explain_run

    out = Path(args.out)
    data, run = out / "data", out / "run"
    model = args.model or str(MODEL_DIR)
    started = time.perf_counter()
    if not (data / "anno.json").exists():
        write_folder_dataset(data, args.samples, seed=args.seed)
    records = {r.id: r for r in load_dataset("folder", data)}
    inputs = [
        EncodeInput(id=line["id"], messages=line["messages"], answer=records[line["id"]].captions[0])
        for line in manifest_lines("folder", data)
    ]
    report = encode_path(model, inputs, run, device="cpu", dtype="fp32", settings=EncodeSettings(top_k=3))
    if report.failed:
        raise SystemExit(f"encode failed: {report.failed}")
    encoded = time.perf_counter()
    for variant, settings in VARIANTS.items():
        explained = explain_run(run, settings, variant)
        if explained.failed:
            raise SystemExit(f"explain {variant} failed: {explained.failed}")
    result = evaluate_run(run, "folder", data)
    write_results(result, out / "eval")
    print(format_table(result))
    classes = per_class(result)
    points = pointing(run, data, AutoTokenizer.from_pretrained(model))
    print()
    print(table(classes, points))
    summary = {"samples": len(inputs), "seed": args.seed, "model": model, "per_class": classes, **points}
    summary["seconds"] = {"encode": encoded - started, "total": time.perf_counter() - started}
    (out / "shapes_eval.json").write_text(json.dumps(summary, indent=1))
    print(f"\nencode {summary['seconds']['encode']:.0f} s, total {summary['seconds']['total']:.0f} s; {out}")


if __name__ == "__main__":
    main()
