"""Reading a run without computing: `tamx render` against `tamx explain` at Qwen2-VL-2B size.

Issue 21.1 asked whether `tamx explain` should store every map a reader asks for (the
candidate and prompt maps included) or leave them deferred for a reader layer to compute
(only their batch). Both are timed here as whole commands (`python -m tamx.pipeline ...`,
start-up included; wall and CPU seconds, the CPU figure is the one to trust on a shared
machine) on the same synthetic samples (391 vision cells, 128 answer tokens, 20 prompt tokens,
top-3 candidates, hidden size 1536, vocabulary 151936, bfloat16, a 640x480 JPEG each):

- **stored** (what `tamx explain` does now): explain computes and stores every map; render reads;
- **deferred + reader**: explain stores the answer maps only (`explain_sample(defer=True)`,
  what `tamx explain` did before) and render computes the candidate/prompt batch alone
  (`tamx.explain.complete_maps`, as it does for such runs now);
- **deferred, before**: the same run rendered the way `Run.maps` did it before, a whole
  `explain_sample` per variant per sample (the issue's measurement).

Each render draws two variants (tam, and cam: `--no-eci --filter none`). The ratio is render
of two variants / `tamx explain` of one (tam), each option against its own explain; the
target is <= 1. Repeats are interleaved in a rotated order and the medians reported.

`--dataset-size N` (issue 25.4) instead writes N such samples (in a temporary folder, its
size printed) with a folder dataset of masks, explains tam and cam, and times `tamx render`
and `tamx eval` per sample against the 30 and 20 ms targets; `--profile` adds cProfile's top
functions of an in-process render and eval of 100 samples.

    python benchmarks/passive_store_bench.py [--samples 30] [--repeats 5]
    python benchmarks/passive_store_bench.py --dataset-size 1000 [--profile]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx import Media, create_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

GRID = (1, 17, 23)  # a 640x480 image at Qwen2-VL's patch grid
N_ANSWER, N_CONTEXT, HIDDEN, VOCAB = 128, 20, 1536, 151936
CAM = ["--no-eci", "--filter", "none"]
DISTINCT = 20  # distinct synthetic samples; more are copies under other ids (the work is the same)
CAPTION = (" A", " dog", " sits", " beside", " a", " cat", " on", " the", " grass", ".")
BOXES = {"dog": (60, 120, 300, 420), "cat": (360, 160, 600, 400)}  # x0, y0, x1, y1 in the 640x480 image

# The old `tamx explain` (answer maps only) and the old reader (a whole explain per variant).
DEFERRED_EXPLAIN = """
import functools, sys
import tamx.pipeline.explain as stage
from tamx.explain import explain_sample
from tamx.pipeline.cli import main
stage.explain_sample = functools.partial(explain_sample, defer=True)
main(sys.argv[1:])
"""
OLD_RENDER = """
import sys
import tamx.explain as explain
from tamx.pipeline.cli import main
def complete_maps(sample, maps):
    if maps.deferred:
        full = explain.explain_sample(sample, explain.ExplainSettings.from_json(maps.settings), maps.variant)
        for name in maps.deferred:
            setattr(maps, name, getattr(full, name))
        maps.deferred, maps.nonfinite_lm_head = [], full.nonfinite_lm_head
    return maps
explain.complete_maps = complete_maps
main(sys.argv[1:])
"""


def photo_jpeg() -> bytes:
    """A 640x480 JPEG with smooth gradients and two shapes, like a photo compresses."""
    yy, xx = np.mgrid[0:480, 0:640]
    image = np.dstack([xx / 640 * 255, yy / 480 * 255, (xx + yy) % 256]).astype(np.uint8)
    for x0, y0, x1, y1 in BOXES.values():
        cv2.rectangle(image, (x0, y0), (x1, y1), (30, 40, 220), -1)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def write_run(path: Path, n: int) -> None:
    """A run of n Qwen2-VL-2B-sized samples whose answers name a dog and a cat."""
    jpeg = photo_jpeg()
    run = create_run(path, synthetic_run_info(vocab_size=VOCAB, dtype="bfloat16"))
    base = []
    for seed in range(min(n, DISTINCT)):
        sample = synthetic_sample(
            "s", grids=[GRID], n_answer=N_ANSWER, n_context=N_CONTEXT, hidden_size=HIDDEN,
            vocab_size=VOCAB, dtype="bfloat16", seed=seed, media=False,
        )  # fmt: skip
        tokens = list(sample.tokens)
        for i, position in enumerate(sample.answer_positions.tolist()):
            tokens[position] = CAPTION[i % len(CAPTION)]
        base.append(
            dataclasses.replace(
                sample, tokens=tokens, media=[Media(item=0, kind="image", mime="image/jpeg", data=jpeg)]
            )
        )
    for i in range(n):
        run.write_sample(dataclasses.replace(base[i % len(base)], id=f"s{i:04d}"))


def write_dataset(folder: Path, n: int) -> None:
    """A folder dataset (anno.json, image, label PNG) with a dog and a cat mask for each sample."""
    folder.mkdir(parents=True)
    label = np.zeros((480, 640), np.uint8)
    for value, (x0, y0, x1, y1) in enumerate(BOXES.values(), start=1):
        label[y0:y1, x0:x1] = value
    cv2.imwrite(str(folder / "label.png"), label)
    (folder / "image.jpg").write_bytes(photo_jpeg())
    categories = {name: value for value, name in enumerate(BOXES, start=1)}
    entries = [
        {"id": f"s{i:04d}", "image": "image.jpg", "label": "label.png", "categories": categories, "caption": ""}
        for i in range(n)
    ]
    (folder / "anno.json").write_text(json.dumps(entries))


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def tamx(*args: str) -> list[str]:
    return [sys.executable, "-m", "tamx.pipeline", *args, "--quiet"]


def script(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args, "--quiet"]


def maps_bytes(run: Path, variant: str) -> int:
    return sum(p.stat().st_size for p in run.glob(f"samples/*/maps/{variant}.*"))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def compare(samples: int, repeats: int, folder: Path) -> None:
    stored, deferred = folder / "stored", folder / "deferred"
    write_run(stored, samples)
    shutil.copytree(stored, deferred)
    subprocess.run(tamx("explain", str(stored), *CAM), check=True)
    subprocess.run(script(DEFERRED_EXPLAIN, "explain", str(deferred), *CAM), check=True)
    commands = {
        "explain, stored": tamx("explain", str(stored), "--overwrite"),
        "explain, deferred": script(DEFERRED_EXPLAIN, "explain", str(deferred), "--overwrite"),
        "render, stored": tamx("render", str(stored), "--out", str(folder / "html-stored")),
        "render, deferred + reader": tamx("render", str(deferred), "--out", str(folder / "html-reader")),
        "render, deferred before": script(OLD_RENDER, "render", str(deferred), "--out", str(folder / "html-old")),
    }
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    names = list(commands)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(commands[name]))
    for page in (folder / "html-stored" / "samples").iterdir():  # the three renders drew the same pages
        assert page.read_bytes() == (folder / "html-reader" / "samples" / page.name).read_bytes(), page.name
        assert page.read_bytes() == (folder / "html-old" / "samples" / page.name).read_bytes(), page.name
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    print(f"{samples} samples (391 cells x 128 answer tokens, K=3, 20 prompt tokens, bf16 1536), "
          f"medians of {repeats} interleaved repeats, whole processes\n")  # fmt: skip
    print("| command | wall s | CPU s | CPU ms/sample |")
    print("| --- | --- | --- | --- |")
    for name in commands:
        print(f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | {cpu[name] / samples * 1e3:.0f} |")
    print("\n| option | render (2 variants) / explain (1 variant), CPU | wall | tam bytes/sample |")
    print("| --- | --- | --- | --- |")
    rows = [
        ("stored", "render, stored", "explain, stored", stored),
        ("deferred + reader", "render, deferred + reader", "explain, deferred", deferred),
        ("deferred, before", "render, deferred before", "explain, deferred", deferred),
    ]
    for label, render, explain, run in rows:
        size = maps_bytes(run, "tam") / samples / 1e6
        print(f"| {label} | {cpu[render] / cpu[explain]:.2f} | {wall[render] / wall[explain]:.2f} | {size:.2f} MB |")
    print(f"\nbaseline `tamx explain` as now (stored) vs before (deferred), CPU: "
          f"{cpu['explain, stored'] / cpu['explain, deferred']:.2f}x")  # fmt: skip


def profile(run: Path, data: Path, n: int) -> None:
    """cProfile's top cumulative functions of an in-process render and eval of n samples."""
    import cProfile
    import pstats

    from tamx.pipeline.eval import evaluate_run
    from tamx.pipeline.render import render_run

    from tamx import open_run

    ids = open_run(run).sample_ids()[:n]
    for name, call in (
        ("render", lambda: render_run(run, run.parent / "html-profile", sample_ids=ids)),
        ("eval", lambda: evaluate_run(run, "folder", data, sample_ids=ids)),
    ):
        profiler = cProfile.Profile()
        profiler.runcall(call)
        print(f"\n{name} of {n} samples, in-process, top 25 by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


def dataset_size(n: int, folder: Path, with_profile: bool) -> None:
    run, data = folder / "run", folder / "data"
    start = time.perf_counter()
    write_run(run, n)
    write_dataset(data, n)
    print(f"wrote {n} samples in {time.perf_counter() - start:.0f} s")
    explain_tam = timed(tamx("explain", str(run), "--workers", "1"))
    explain_cam = timed(tamx("explain", str(run), *CAM, "--workers", "1"))
    empty = timed(tamx("explain", str(run)))  # start-up and listing: every variant is stored
    size = folder_bytes(run)
    render = timed(tamx("render", str(run), "--out", str(folder / "html")))
    evaluate = timed(tamx("eval", str(run), "--dataset", "folder", "--data", str(data), "--out", str(folder / "ev")))
    scored = json.loads((folder / "ev" / "summary.json").read_text())["variants"]
    assert all(v["samples"] == n for v in scored.values()), scored
    print(f"\n{n} samples, run {size / 1e9:.2f} GB ({size / n / 1e6:.2f} MB/sample), pages "
          f"{folder_bytes(folder / 'html') / 1e6:.0f} MB; variants tam and cam\n")  # fmt: skip
    print("| command | wall s | CPU s | wall ms/sample | CPU ms/sample | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, (wall, cpu), target in (
        ("tamx explain (tam)", explain_tam, ""),
        ("tamx explain (cam)", explain_cam, ""),
        ("tamx explain, nothing to do", empty, ""),
        ("tamx render (2 variants)", render, "<= 30 ms"),
        ("tamx eval (2 variants)", evaluate, "<= 20 ms"),
    ):
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {wall / n * 1e3:.1f} | {cpu / n * 1e3:.1f} | {target} |")
    if with_profile:
        profile(run, data, min(n, 100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="samples of the comparison run")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats of each command")
    parser.add_argument("--dataset-size", type=int, default=0, help="time render and eval over this many samples")
    parser.add_argument("--profile", action="store_true", help="with --dataset-size: cProfile render and eval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="passive-store-") as tmp:
        if args.dataset_size:
            dataset_size(args.dataset_size, Path(tmp), args.profile)
        else:
            compare(args.samples, args.repeats, Path(tmp))


if __name__ == "__main__":
    main()
