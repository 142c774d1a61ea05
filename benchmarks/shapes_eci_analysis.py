"""Why ECI changes the colour words' maps in the shapes benchmark, from the stored maps.

Reads the run and data of `benchmarks/shapes_eval.py` (variant `eci`) and reports, over the
colour words: pointing of the CAM and of the ECI map, the least-squares scale s_i, the context
token with the largest relevance and its share, where that token's own map peaks, the share of
the CAM that ECI removes on the word's object and elsewhere, and how often the removed part
peaks on the object.

    python benchmarks/shapes_eci_analysis.py --out /tmp/shapes-eval [--model PATH]
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx import open_run
from tamx.datasets import load_dataset
from tamx.layout import map_frames
from tamx.pointing import COVER, cell_cover
from tamx.shapes import word_classes

CLASSES = word_classes()


def analyse(run_path: Path, data: Path, tokenizer) -> dict:
    run = open_run(run_path)
    records = {r.id: r for r in load_dataset("folder", data)}
    top: collections.Counter[str] = collections.Counter()
    share, scale, peak_same, peak_any, cam_hit, eci_hit = [], [], [], [], [], []
    removed_on, removed_off, removed_peak_on = [], [], []
    for sample_id in run.sample_ids():
        sample = run.sample(sample_id, media=False)
        maps = run.maps(sample_id, "eci")
        masks = records[sample_id].masks()
        union = np.any(np.stack(list(masks.values())), axis=0)
        frames = map_frames(sample.vision_blocks)
        ids, answers, context = sample.input_ids, sample.answer_positions, sample.context_positions
        for i, position in enumerate(answers):
            word = tokenizer.decode([int(ids[position])]).strip()
            if CLASSES.get(word) != "colour":
                continue
            cover = cell_cover(masks[word], frames) >= COVER
            any_cover = cell_cover(union, frames) >= COVER
            cam, eci = maps.cam[i], maps.eci[i]
            cam_hit.append(bool(cam.max() > 0 and cover.flat[int(np.argmax(cam))]))
            eci_hit.append(bool(eci.max() > 0 and cover.flat[int(np.argmax(eci))]))
            removed = cam - eci
            flat = cover.ravel()
            if cam[flat].sum() > 0 and cam[~flat].sum() > 0:
                removed_on.append(removed[flat].sum() / cam[flat].sum())
                removed_off.append(removed[~flat].sum() / cam[~flat].sum())
                removed_peak_on.append(bool(flat[int(np.argmax(removed))]))
            relevance = np.concatenate([maps.text_relevance[i], maps.answer_relevance[i][:i]])
            if relevance.sum() <= 0:
                continue
            names = [tokenizer.decode([int(ids[q])]).strip() for q in (*context, *answers[:i])]
            k = int(np.argmax(relevance))
            top[names[k]] += 1
            share.append(relevance[k] / relevance.sum())
            scale.append(float(maps.scale[i]))
            if k >= len(context):  # an earlier answer token: its own CAM is stored
                own = maps.cam[k - len(context)]
                peak_same.append(bool(own.max() > 0 and cover.flat[int(np.argmax(own))]))
                peak_any.append(bool(own.max() > 0 and any_cover.flat[int(np.argmax(own))]))
    return {
        "colour_words": len(cam_hit),
        "pointing_cam": float(np.mean(cam_hit)),
        "pointing_eci": float(np.mean(eci_hit)),
        "scale_mean": float(np.mean(scale)),
        "scale_median": float(np.median(scale)),
        "top_contributors": top.most_common(5),
        "top_share_of_relevance": float(np.mean(share)),
        "top_is_answer_token": len(peak_same),
        "its_map_peaks_on_same_object": float(np.mean(peak_same)),
        "its_map_peaks_on_some_object": float(np.mean(peak_any)),
        "eci_removes_on_object": float(np.mean(removed_on)),
        "eci_removes_elsewhere": float(np.mean(removed_off)),
        "removed_part_peaks_on_object": float(np.mean(removed_peak_on)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="the --out folder of shapes_eval.py")
    parser.add_argument("--model", default=None, help="its tokenizer (default: the bundled toy model)")
    args = parser.parse_args(argv)
    from tamx.pipeline.demo import resolve_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model or "tamx-demo"))
    out = Path(args.out)
    results = {**analyse(out / "run", out / "data", tokenizer), **estimate_shape(out / "run", tokenizer)}
    for key, value in results.items():
        print(f"{key:32} {value}")


def estimate_shape(run_path: Path, tokenizer) -> dict:
    """Cosine of each colour word's CAM A_i with its interference estimate E_i (Eq. 4), and of both
    with the map of the vision hidden-state norms |h[v]| (a component every class shares)."""
    from tamx.activation import activation_maps

    run = open_run(run_path)
    cos_ae, cos_an, cos_en, scale_error = [], [], [], []

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    for sample_id in run.sample_ids():
        sample = run.sample(sample_id, media=False)
        maps = run.maps(sample_id, "eci")
        hidden = sample.hidden_float32()
        (block,) = sample.vision_blocks
        vision = hidden[block.start : block.stop]
        norms = np.linalg.norm(vision, axis=1)
        head = sample.lm_head
        index = {int(t): j for j, t in enumerate(head.ids)}
        rows = head.rows.astype(np.float32)
        bias = None if head.bias is None else head.bias.astype(np.float32)
        ids, answers, context = sample.input_ids, sample.answer_positions, sample.context_positions
        classes = [index[int(ids[q])] for q in context]
        prompt_maps = activation_maps(vision, rows[classes], None if bias is None else bias[classes]).T
        for i, position in enumerate(answers):
            if CLASSES.get(tokenizer.decode([int(ids[position])]).strip()) != "colour":
                continue
            r = np.concatenate([maps.text_relevance[i], maps.answer_relevance[i][:i]])
            if r.sum() <= 0:
                continue
            context_maps = np.concatenate([prompt_maps, maps.cam[:i]])
            estimate = (r / (r.sum() + 1e-8)) @ context_maps
            a = maps.cam[i]
            # the estimate rebuilt here gives the stored least-squares scale (a check of the rebuild)
            scale_error.append(abs(float(a @ estimate / (estimate @ estimate)) - float(maps.scale[i])))
            cos_ae.append(cos(a, estimate))
            cos_an.append(cos(a, norms))
            cos_en.append(cos(estimate, norms))
    return {
        "cos_cam_estimate": float(np.mean(cos_ae)),
        "cos_cam_hidden_norm": float(np.mean(cos_an)),
        "cos_estimate_hidden_norm": float(np.mean(cos_en)),
        "rebuilt_scale_max_error": float(np.max(scale_error)),
    }


if __name__ == "__main__":
    main()
