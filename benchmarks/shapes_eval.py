"""Ground-truth benchmark on the shapes world: generate -> encode -> explain -> eval, with true masks.

A held-out set of shapes-world scenes (`tamx shapes`, a seed the training never draws) is
encoded with the bundled toy VLM (or --model) teacher-forced on the true captions
(`manifest-true.jsonl`) so that every colour and shape word is scored, explained with the
variants cam (neither module), eci (ECI, no filter), rank-gaussian (the filter, no ECI) and tam,
and scored by `tamx eval`'s stage: Obj-IoU / Func-IoU / F1-IoU and pointing accuracy with its
chance, overall and per word class (colour, shape). On top, the teacher-forced top-1 accuracy
of each word class (is the true next word the model's first candidate?).

    python benchmarks/shapes_eval.py --out /tmp/shapes-eval [--samples 200] [--seed 1000] [--model tamx-demo]

The same tables from the command line (docs/demo.md):
`tamx shapes --out D`, `tamx encode --model tamx-demo --manifest D/manifest-true.jsonl --out R`,
`tamx explain R` (per variant), `tamx eval R --dataset folder --data D`.
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
from tamx.shapes import word_classes
from tamx.tokens import token_strings

VARIANTS = {
    "cam": ExplainSettings(eci="off", filter="none", candidates=False, prompt=False),
    "eci": ExplainSettings(filter="none", candidates=False, prompt=False),
    "rank-gaussian": ExplainSettings(eci="off", candidates=False, prompt=False),
    "tam": ExplainSettings(candidates=False, prompt=False),
}


def teacher_forced_top1(run_path: Path) -> dict[str, float]:
    """Per word class (colour, shape, other): how often the given next word is the model's top candidate."""
    classes = word_classes()
    run = open_run(run_path)
    hits: dict[str, list[float]] = defaultdict(list)
    for sample_id in run.sample_ids():
        sample = run.sample(sample_id, media=False)
        strings = token_strings(sample)
        for i, position in enumerate(sample.answer_positions.tolist()):
            kind = classes.get(strings[position].strip(), "other")
            hits[kind].append(float(sample.candidate_ids[i, 0] == sample.input_ids[position]))
    return {k: float(np.mean(v)) for k, v in sorted(hits.items())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000, help="scene seed (training draws other streams)")
    parser.add_argument("--model", default="tamx-demo", help="model folder or id (default: the bundled toy model)")
    args = parser.parse_args(argv)

    from tamx.pipeline.demo.dataset import write_shapes_dataset
    from tamx.pipeline.encode import EncodeSettings, encode_path
    from tamx.pipeline.eval import evaluate_run, write_results
    from tamx.pipeline.eval.stage import format_class_table, format_table
    from tamx.pipeline.explain import explain_run

    out = Path(args.out)
    data, run = out / "data", out / "run"
    started = time.perf_counter()
    if not (data / "anno.json").exists():
        write_shapes_dataset(data, args.samples, args.seed)
    settings = EncodeSettings(top_k=3)
    report = encode_path(args.model, data / "manifest-true.jsonl", run, device="cpu", dtype="fp32", settings=settings)
    if report.failed:
        raise SystemExit(f"encode failed: {report.failed}")
    encoded = time.perf_counter()
    for variant, explain_settings in VARIANTS.items():
        explained = explain_run(run, explain_settings, variant)
        if explained.failed:
            raise SystemExit(f"explain {variant} failed: {explained.failed}")
    result = evaluate_run(run, "folder", data)
    write_results(result, out / "eval")
    print(format_table(result))
    print()
    print(format_class_table(result))
    top1 = teacher_forced_top1(run)
    print("\nteacher-forced top-1 accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in top1.items()))
    summary = {
        "samples": len(open_run(run).sample_ids()),
        "seed": args.seed,
        "model": args.model,
        "variants": {v: result.summaries[v].to_json() | {"pointing": result.pointing(v).to_json()} for v in VARIANTS},
        "per_word_class": {v: result.per_word_class(v) for v in VARIANTS},
        "teacher_forced_top1": top1,
    }
    summary["seconds"] = {"encode": encoded - started, "total": time.perf_counter() - started}
    (out / "shapes_eval.json").write_text(json.dumps(summary, indent=1))
    print(f"\nencode {summary['seconds']['encode']:.0f} s, total {summary['seconds']['total']:.0f} s; {out}")


if __name__ == "__main__":
    main()
