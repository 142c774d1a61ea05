"""Forward passes per second of `tamx faithfulness` and the speed-up of batching, in one run.

Scores the same perturbed images of one sample (its image and its blurred copy, alternating)
teacher-forced with the bundled toy model at several batch sizes and torch thread counts, and
prints images per second and the ratio against the first batch size (same thread count, same
run); with several --dtypes, also the ratio against the first dtype (same threads and batch);
with several --ranks, also the ratio against the first number of processes (same setting).

    python benchmarks/faithfulness_bench.py [--run RUN] [--images 64] [--batch-sizes 1,8,32] [--threads 1,2]
        [--dtypes fp32,bf16] [--ranks 1,2]

--ranks N runs N processes at once (as `torchrun --nproc-per-node N` ranks do), each loading the
model and scoring --images images per setting, every round started together at a barrier; its
images/s is all their images over the slowest process's seconds.

Without --run it writes one shapes scene and encodes it with tamx-demo in a temporary folder.

    python benchmarks/faithfulness_bench.py --count --run RUN [--variants cam,tam] [--data SHAPES]

counts, with no forward pass, the images a full `tamx faithfulness` of RUN's explained samples
scores (default settings; the mask control with --data, a shapes folder) when each order's steps
are scored on their own and when steps showing the same image are shared, and their ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _small_run(folder: Path) -> Path:
    from tamx.pipeline.demo.dataset import write_shapes_dataset
    from tamx.pipeline.encode import EncodeSettings, encode_path

    data, run = folder / "data", folder / "run"
    write_shapes_dataset(data, 1, 1000)
    encode_path("tamx-demo", data / "manifest-true.jsonl", run, device="cpu", dtype="fp32", settings=EncodeSettings())
    return run


def count(run_path: str, variants: list[str], data: str | None) -> None:
    import numpy as np
    from tamx.pipeline.faithfulness.stage import FaithfulnessSettings, faithfulness_sample

    from tamx import open_run
    from tamx.datasets import category_names, load_dataset
    from tamx.pos import Tagger, category_lemmas

    class Counter:
        """A scorer that counts the images it is given and scores none."""

        def __init__(self, share: bool) -> None:
            self.share, self.images = share, 0

        def score(self, sample, prompt, sets, layout=None):
            self.images += len(sets)
            return np.zeros((len(sets), len(sample.answer_positions)), np.float32)

    run = open_run(run_path)
    records = {r.id: r for r in load_dataset("folder", data)} if data else {}
    lemmas = category_lemmas(category_names(list(records.values()))) if records else {}
    tagger = Tagger("rules", {w for ws in lemmas.values() for w in ws})
    ids = run.sample_ids()
    counted = {}
    for share in (False, True):
        scorer = Counter(share)
        for sample_id in ids:
            faithfulness_sample(
                scorer, run, sample_id, variants, FaithfulnessSettings(), tagger, records.get(sample_id)
            )
        counted[share] = scorer.images
    print(f"{len(ids)} samples, variants {','.join(variants)}: {counted[False]} images each order on its own, "
          f"{counted[True]} shared ({counted[False] / counted[True]:.3f}x fewer)")  # fmt: skip


def _best_seconds(
    run_path: str, images: int, settings: list[tuple[int, int, str]], rounds: int, barrier: Any = None
) -> list[float]:
    """Best seconds of scoring `images` perturbed images per (threads, batch, dtype) setting; with
    a barrier, the processes start every round together."""
    import torch
    from tamx.pipeline.encode.loading import load_model, load_processor
    from tamx.pipeline.faithfulness.stage import Scorer, baseline_image, decode_images

    from tamx import open_run

    run = open_run(run_path)
    sample = run.sample(run.sample_ids()[0])
    image = next(iter(decode_images(sample).values()))
    sets = [[image if k % 2 else baseline_image(image, "blur")] for k in range(images)]
    models = {dtype: load_model("tamx-demo", device="cpu", dtype=dtype) for dtype in {d for _, _, d in settings}}
    processor = load_processor("tamx-demo")
    prompt = sample.meta["prompt"]
    for model in models.values():  # one-time costs (allocations, kernel choice) before any timing
        Scorer(model, processor, 2).score(sample, prompt, sets[:2])
    found = []
    for threads, batch, dtype in settings:
        torch.set_num_threads(threads)
        best = float("inf")
        for _ in range(rounds):
            scorer = Scorer(models[dtype], processor, batch)
            if barrier is not None:
                barrier.wait()
            began = time.perf_counter()
            scorer.score(sample, prompt, sets)
            best = min(best, time.perf_counter() - began)
        found.append(best)
    return found


def _process(run_path: str, images: int, settings: list, rounds: int, barrier: Any, results: Any) -> None:
    results.put(_best_seconds(run_path, images, settings, rounds, barrier))


def rates(run_path: str, images: int, settings: list[tuple[int, int, str]], rounds: int, ranks: int) -> list[float]:
    """Images per second of each setting with `ranks` processes scoring at once (1: this one)."""
    if ranks == 1:
        return [images / seconds for seconds in _best_seconds(run_path, images, settings, rounds)]
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(ranks), context.Queue()
    processes = [
        context.Process(target=_process, args=(run_path, images, settings, rounds, barrier, results))
        for _ in range(ranks)
    ]
    for process in processes:
        process.start()
    found = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return [ranks * images / max(seconds[k] for seconds in found) for k in range(len(settings))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", help="a run encoded with tamx-demo (default: one fresh shapes scene)")
    parser.add_argument("--images", type=int, default=64, help="images scored per setting")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--dtypes", default="fp32", help="model dtypes, comma-separated (fp32, bf16, fp16)")
    parser.add_argument("--ranks", default="1", help="numbers of processes scoring at once, comma-separated")
    parser.add_argument("--rounds", type=int, default=2, help="repeats per setting (best is kept)")
    parser.add_argument("--count", action="store_true", help="count the images a full run scores, no model")
    parser.add_argument("--variants", default="cam,tam", help="with --count")
    parser.add_argument("--data", help="with --count: the shapes folder the run was encoded from (mask control)")
    args = parser.parse_args(argv)
    if args.count:
        count(args.run, args.variants.split(","), args.data)
        return

    from tamx import open_run

    dtypes, counts = args.dtypes.split(","), [int(r) for r in args.ranks.split(",")]
    # dtypes interleaved, so that a change of load touches every dtype alike
    settings = [(t, b, d) for t in _ints(args.threads) for b in _ints(args.batch_sizes) for d in dtypes]
    with tempfile.TemporaryDirectory() as scratch:
        run_path = str(args.run or _small_run(Path(scratch)))
        run = open_run(run_path)
        sample = run.sample(run.sample_ids()[0], media=False)
        print(f"{args.images} images a setting and process, {len(sample.input_ids)} tokens each")
        found = {ranks: rates(run_path, args.images, settings, args.rounds, ranks) for ranks in counts}
    columns = f"{'speed-up':>9} {'vs ' + dtypes[0]:>9} {f'vs r{counts[0]}':>9}"
    print(f"{'dtype':>5} {'threads':>7} {'batch':>5} {'ranks':>5} {'images/s':>9} {columns}")
    for ranks in counts:
        first = {}  # images/s of the first batch per (dtype, threads), of the first dtype per (threads, batch)
        for k, (threads, batch, dtype) in enumerate(settings):
            rate = found[ranks][k]
            base = first.setdefault((dtype, threads), rate)
            reference = first.setdefault((threads, batch), rate)
            ratios = f"{rate / base:>8.2f}x {rate / reference:>8.2f}x {rate / found[counts[0]][k]:>8.2f}x"
            print(f"{dtype:>5} {threads:>7} {batch:>5} {ranks:>5} {rate:>9.1f} {ratios}")


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


if __name__ == "__main__":
    main()
