"""Build a run store from synthetic samples, explain it two ways and print what it holds.

No model and no GPU: the hidden states are random, so the maps are meaningless, but every
file and command is the real one. Usage: python example/synthetic_run.py [RUN_FOLDER]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from tamx.pipeline.explain import explain_run
from tamx.pipeline.info import run_summary

from tamx import ExplainSettings, create_run, open_run
from tamx.synthetic import synthetic_run_info, synthetic_sample


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="tamx-example-")) / "run"
    run = create_run(folder, synthetic_run_info(dtype="bfloat16"))
    layouts = {"one-image": [(1, 17, 23)], "two-images": [(1, 8, 10), (1, 6, 6)], "video": [(5, 8, 8)]}
    for seed, (sample_id, grids) in enumerate(layouts.items()):
        run.write_sample(synthetic_sample(sample_id, grids=grids, dtype="bfloat16", hidden_size=256, seed=seed))
    explain_run(folder)  # the paper's TAM, stored as variant "tam"
    explain_run(folder, ExplainSettings(eci="off", filter="none"))  # plain CAM, variant "cam"

    summary = run_summary(folder)
    print(f"run store: {folder} ({summary['bytes'] / 1e3:.0f} kB)")
    for sample in summary["samples"]:
        vision = "; ".join(sample["vision"])
        print(f"  {sample['id']:<11} {sample['answer_tokens']} answer tokens, {vision}, variants {sample['variants']}")
    maps = open_run(folder).maps("one-image", "tam")
    print(f"one-image TAM maps: {maps.final.shape} (answer tokens x vision cells)")
    print(f"\nnext: tamx info {folder}    tamx export {folder} --sample video --out video.safetensors")


if __name__ == "__main__":
    main()
