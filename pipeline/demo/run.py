"""`tamx demo`: encode bundled shapes-world inputs with the bundled toy VLM, explain and render them.

Everything runs offline on a CPU: the model (a LLaVA-1.5-architecture toy, trained by
`pipeline/demo/train.py`) is loaded from the package folder through `from_pretrained`, the
inputs are drawn from the seeded shapes world (`tamx.shapes`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from tamx import ExplainSettings
from tamx.errors import TamxError
from tamx.shapes import PROMPT, PROMPT_TWO, Scene, scenes

from . import DEMO_MODEL, MODEL_DIR, resolve_model

log = logging.getLogger(__name__)

DEMO_SEED = 2025
VARIANTS = {
    "tam": ExplainSettings(),
    "cam": ExplainSettings(eci="off", filter="none"),
    "eci": ExplainSettings(filter="none"),
}
NOTICE = (
    "Demo: the bundled model is a toy (a 1.3 M-parameter LLaVA-architecture VLM trained for 40 minutes on a CPU, "
    "on synthetic images of coloured shapes). It is not a real VLM; its maps only show what the method computes. "
    "To explain a real model: tamx encode --model Qwen/Qwen2-VL-2B-Instruct --image photo.jpg "
    '--prompt "Describe the image." --out runs/photo, then tamx explain runs/photo and '
    "tamx render runs/photo --out report."
)


@dataclass
class DemoReport:
    """What `run_demo` wrote: the run store, the report's index.html, the sample ids and the seconds taken."""

    run: Path
    index: Path
    samples: list[str]
    seconds: float


def demo_scenes() -> dict[str, list[Scene]]:
    """The bundled inputs: one, two and three shapes, and a two-image question."""
    pool = scenes(DEMO_SEED, 40)
    by_count: dict[int, list[Scene]] = {}
    for scene in pool:
        by_count.setdefault(len(scene.objects), []).append(scene)
    return {
        "one-shape": [by_count[1][0]],
        "two-shapes": [by_count[2][0]],
        "three-shapes": [by_count[3][0]],
        "two-images": [by_count[2][1], by_count[1][1]],
    }


def demo_inputs(folder: Path):
    """Write the demo images under `folder` and return the encode inputs."""
    from tamx.pipeline.encode import inline_input

    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for sample_id, group in demo_scenes().items():
        paths = []
        for k, scene in enumerate(group):
            path = folder / f"{sample_id}-{k}.png"
            cv2.imwrite(str(path), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
            paths.append(str(path))
        prompt = PROMPT if len(group) == 1 else PROMPT_TWO
        inputs.append(inline_input(images=tuple(paths), prompt=prompt, sample_id=sample_id))
    return inputs


def check_out(out: str | Path, overwrite: bool = False) -> None:
    """Refuse, before the model loads, an `out` that holds an earlier demo's run (unless `overwrite`)."""
    run_path = Path(out) / "run"
    if run_path.exists() and not overwrite:
        raise TamxError(f"{run_path} exists; give another --out, or --overwrite to replace the earlier demo")


def run_demo(out: str | Path, model: str | None = None, overwrite: bool = False) -> DemoReport:
    """Encode, explain (tam, cam, eci) and render the demo into `out` (inputs/, run/ and report/);
    with `overwrite`, those three folders of an earlier demo are removed first."""
    started = time.perf_counter()
    check_out(out, overwrite)  # before torch and the model load (seconds)
    from tamx.pipeline.encode import EncodeSettings, encode, load_model, load_processor, model_name
    from tamx.pipeline.explain import explain_run
    from tamx.pipeline.render import render_run

    out = Path(out)
    model_id = resolve_model(model or DEMO_MODEL)
    bundled = model_id == str(MODEL_DIR)
    if bundled and not (MODEL_DIR / "config.json").is_file():
        raise TamxError(
            f"the bundled demo model is missing from {MODEL_DIR}; retrain it with "
            "`python -m tamx.pipeline.demo.train --out runs/shapes-train --export pipeline/demo/model`"
        )
    run_path, report_path = out / "run", out / "report"
    if overwrite:
        import shutil

        for folder in (out / "inputs", run_path, report_path):
            shutil.rmtree(folder, ignore_errors=True)
    if run_path.exists():
        raise TamxError(f"{run_path} exists; give another --out, or --overwrite to replace the earlier demo")
    vlm = load_model(model_id, device="cpu", dtype="fp32")
    processor = load_processor(model_id)
    name = DEMO_MODEL if bundled else model_name(model_id)  # never a machine path
    inputs = demo_inputs(out / "inputs")
    report = encode(
        vlm,
        processor,
        inputs,
        run_path,
        model_id=name,
        settings=EncodeSettings(max_new_tokens=24),
        extra={"notice": NOTICE if bundled else None},
    )
    if report.failed:
        raise TamxError(f"the demo could not encode: {report.failed}")
    for variant, settings in VARIANTS.items():
        explained = explain_run(run_path, settings, variant)
        if explained.failed:
            raise TamxError(f"the demo could not explain {variant}: {explained.failed}")
    rendered = render_run(run_path, report_path)
    if rendered.failed:
        raise TamxError(f"the demo could not render: {rendered.failed}")
    return DemoReport(run_path, report_path / "index.html", [s.id for s in inputs], time.perf_counter() - started)


def captions(run_path: Path) -> dict[str, str]:
    """The answer of every sample of a demo run."""
    from tamx.store import open_run

    run = open_run(run_path)
    return {sample_id: run.sample(sample_id, media=False).meta.get("answer", "") for sample_id in run.sample_ids()}
