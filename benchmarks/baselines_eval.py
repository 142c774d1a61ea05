"""TAM against today's explanations from the same encode (issue 22, docs/eval.md "Baselines"),
on held-out shapes-world scenes with the bundled toy VLM, teacher-forced on the true captions.

One encode records the last layer (as always), layers -2 and -3 (`--layers`), attention of
every layer with rollout (`--attention all`) and Grad-CAM at layer -2 (`--gradients -2`);
explain makes tam, cam, tam at layers -2 and -3, attention, rollout and gradient; `tamx eval`'s
stage scores them against the masks in one table. Before that, the cost of each addition: the
first --cost-samples scenes encoded plain, with --layers, with --attention and with
--gradients (the model loaded once, each setting twice, interleaved; the faster of the two
counts), their time as a ratio to plain, and the stored bytes each adds per sample (tamx
info's "baselines" line).

    python benchmarks/baselines_eval.py --out /tmp/baselines [--samples 200] [--seed 1000] [--cost-samples 40]
        [--rounds 2] [--threads 1] [--cost-only] [--generate]

From the command line: `tamx shapes --out D --scenes 200`, `tamx encode --model tamx-demo
--manifest D/manifest-true.jsonl --out R --layers -1,-2,-3 --attention all --gradients -2`,
`tamx explain R`, `tamx explain R --no-eci --filter none`, `tamx explain R --layer -2` (and
-3), `tamx explain R --method attention`, `tamx explain R --method rollout`, `tamx explain R
--method gradient` (variant gradient_l-2), `tamx eval R --dataset folder --data D`.
A toy model is not a real VLM: these numbers compare the methods on one small model only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx import ExplainSettings

VARIANTS = {
    "tam": ExplainSettings(candidates=False, prompt=False),
    "cam": ExplainSettings(eci="off", filter="none", candidates=False, prompt=False),
    "tam_l-2": ExplainSettings(layer=-2, candidates=False, prompt=False),
    "tam_l-3": ExplainSettings(layer=-3, candidates=False, prompt=False),
    "attention": ExplainSettings(method="attention", filter="none", candidates=False, prompt=False),
    "rollout": ExplainSettings(method="rollout", filter="none", candidates=False, prompt=False),
    "gradient_l-2": ExplainSettings(method="gradient", filter="none", candidates=False, prompt=False),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000, help="scene seed (training draws other streams)")
    parser.add_argument("--cost-samples", type=int, default=40, help="scenes encoded per setting for the cost")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each setting for the cost (the fastest counts)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--cost-only", action="store_true", help="measure the cost, skip the table")
    parser.add_argument(
        "--generate", action="store_true", help="cost of encodes that generate the answers (as tamx demo does)"
    )
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)

    from tamx.pipeline.demo import resolve_model
    from tamx.pipeline.demo.dataset import write_shapes_dataset
    from tamx.pipeline.encode import EncodeSettings, encode, load_model, load_processor
    from tamx.pipeline.encode.inputs import read_manifest
    from tamx.pipeline.eval import evaluate_run, write_results
    from tamx.pipeline.eval.stage import format_table
    from tamx.pipeline.explain import explain_run
    from tamx.pipeline.info import run_summary

    out = Path(args.out)
    data, run = out / "data", out / "run"
    if not (data / "anno.json").exists():
        write_shapes_dataset(data, args.samples, args.seed)
    inputs, failed = read_manifest(data / "manifest-true.jsonl")
    assert not failed, failed
    cost_inputs = read_manifest(data / "manifest.jsonl")[0] if args.generate else inputs
    path = resolve_model("tamx-demo")
    model, processor = load_model(path, device="cpu", dtype="fp32"), load_processor(path)

    costs = {
        "plain": EncodeSettings(top_k=3),
        "layers": EncodeSettings(top_k=3, layers=(-2, -3)),
        "attention": EncodeSettings(top_k=3, attention=()),
        "gradients": EncodeSettings(top_k=3, gradients=-2),
    }
    seconds: dict[str, float] = {}
    added: dict[str, dict[str, float]] = {}
    for _ in range(args.rounds):
        for name, settings in costs.items():
            folder = out / f"cost-{name}"
            shutil.rmtree(folder, ignore_errors=True)
            report = encode(model, processor, cost_inputs[: args.cost_samples], folder, settings=settings)
            assert not report.failed, report.failed
            seconds[name] = min(seconds.get(name, float("inf")), report.seconds)
            samples = run_summary(folder)["samples"]
            added[name] = {
                "bytes_per_sample": sum(s["bytes"] for s in samples) / len(samples),
                **{f"{g}_bytes_per_sample": sum(s["baseline_bytes"].get(g, 0) for s in samples) / len(samples)
                   for g in ("layers", "attention", "gradients")},
            }  # fmt: skip
    print(
        f"encode cost, {args.cost_samples} scenes, answers {'generated' if args.generate else 'teacher-forced'} "
        f"(tamx-demo, CPU, {args.threads} thread(s), "
        f"fastest of {args.rounds} interleaved runs each):"
    )
    for name in costs:
        print(
            f"  {name:<10} {seconds[name]:7.2f} s  x{seconds[name] / seconds['plain']:.2f} of plain  "
            f"{added[name]['bytes_per_sample'] / 1e3:8.1f} kB/sample stored "
            f"(+{(added[name]['bytes_per_sample'] - added['plain']['bytes_per_sample']) / 1e3:.1f} kB)"
        )
    if args.cost_only:
        return

    started = time.perf_counter()
    shutil.rmtree(run, ignore_errors=True)
    settings = EncodeSettings(top_k=3, layers=(-2, -3), attention=(), gradients=-2)
    report = encode(model, processor, inputs, run, settings=settings)
    assert not report.failed, report.failed
    for variant, settings in VARIANTS.items():
        explained = explain_run(run, settings, variant)
        assert not explained.failed, explained.failed
    result = evaluate_run(run, "folder", data)
    write_results(result, out / "eval")
    print(f"\n{len(inputs)} held-out scenes (seed {args.seed}), teacher-forced true captions, tamx-demo:")
    print(format_table(result))
    summary = {
        "samples": len(inputs),
        "seed": args.seed,
        "cost": {
            name: {"seconds": seconds[name], "ratio": seconds[name] / seconds["plain"], **added[name]} for name in costs
        },
        "variants": {v: result.summaries[v].to_json() for v in VARIANTS},
        "seconds": time.perf_counter() - started,
    }
    (out / "baselines_eval.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{summary['seconds']:.0f} s for the table; {out / 'baselines_eval.json'}")


if __name__ == "__main__":
    main()
