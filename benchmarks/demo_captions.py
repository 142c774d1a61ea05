"""How often the demo model's greedy captions are right, on held-out shapes-world scenes.

The model is loaded through tamx's own loading path (`from_pretrained` on the folder, the
processor built from its files), each question is encoded by its processor with the prompt the
model was trained on, and answers are decoded greedily, as `tamx encode` does. Scores:

- exact: the answer equals the true caption, per object count and for two-image questions
  ("Describe the two images.": both captions, in order);
- per object: the k-th phrase "a <colour> <shape>" of the answer against the k-th object left to
  right (a missing phrase counts as wrong): colour right, shape right.

    python benchmarks/demo_captions.py [--model tamx-demo] [--scenes 500] [--two-images 100] [--seed 1000]

The one-image scenes are those of `tamx shapes --seed 1000` (the first N of that seed); the
two-image questions pair scenes of seed + 1. Training draws neither stream.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx.shapes import PROMPT, PROMPT_TWO, Scene, scenes

PHRASE = re.compile(r"a (\w+) (\w+)")


def object_scores(answer: str, truth: list[Scene]) -> list[tuple[bool, bool]]:
    """(colour right, shape right) for every true object, phrases matched by their order."""
    said = PHRASE.findall(answer)
    objects = [o for scene in truth for o in scene.objects]
    return [
        (k < len(said) and said[k][0] == o.colour, k < len(said) and said[k][1] == o.shape)
        for k, o in enumerate(objects)
    ]


def generate(model, processor, groups: list[list[Scene]], batch: int = 50, max_new_tokens: int = 40) -> list[str]:
    """Greedy answers to each group of scenes (one image or two), in order."""
    import torch
    from PIL import Image

    answers = []
    for start in range(0, len(groups), batch):
        chunk = groups[start : start + batch]
        prompt = PROMPT if len(chunk[0]) == 1 else PROMPT_TWO
        content = [{"type": "image"}] * len(chunk[0]) + [{"type": "text", "text": prompt}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        images = [Image.fromarray(s.image) for g in chunk for s in g]
        inputs = processor(text=[text] * len(chunk), images=images, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        answers += [a.strip() for a in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers


def caption_scores(model_id: str, n_scenes: int, n_two: int, seed: int) -> dict:
    """Exact-caption rates by object count and for two-image questions, and per-object accuracy."""
    import torch
    from tamx.pipeline.encode.loading import load_model, load_processor

    torch.set_num_threads(1)
    model, processor = load_model(model_id, device="cpu", dtype="fp32"), load_processor(model_id)
    one = [[s] for s in scenes(seed, n_scenes)]
    pool = scenes(seed + 1, 2 * n_two)
    two = [[pool[2 * i], pool[2 * i + 1]] for i in range(n_two)]
    exact: dict[str, list[bool]] = defaultdict(list)
    per_object: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
    examples = []
    for groups in (one, two):
        if not groups:
            continue
        for group, answer in zip(groups, generate(model, processor, groups)):
            truth = " ".join(s.caption for s in group)
            key = f"{len(group[0].objects)} object(s)" if len(group) == 1 else "two images"
            exact[key].append(answer == truth)
            if len(group) == 1:
                exact["one image, all"].append(answer == truth)
            found = object_scores(answer, group)
            per_object["one image" if len(group) == 1 else "two images"] += found
            per_object["all"] += found
            if answer != truth and len(examples) < 8:
                examples.append({"truth": truth, "said": answer})
    return {
        "model": model_id,
        "seed": seed,
        "exact": {k: {"rate": float(np.mean(v)), "n": len(v)} for k, v in sorted(exact.items())},
        "per_object": {
            k: {"colour": float(np.mean([c for c, _ in v])), "shape": float(np.mean([s for _, s in v])), "n": len(v)}
            for k, v in per_object.items()
        },
        "wrong_examples": examples,
    }


def format_scores(scores: dict) -> str:
    lines = ["| questions | n | exact caption |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['rate']:.3f} |" for k, v in scores["exact"].items()]
    lines += ["", "| objects of | n | colour right | shape right |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['n']} | {v['colour']:.3f} | {v['shape']:.3f} |" for k, v in scores["per_object"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tamx-demo")
    parser.add_argument("--scenes", type=int, default=500)
    parser.add_argument("--two-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", default=None, help="also write the scores to this file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    from tamx.errors import TamxError

    try:
        scores = caption_scores(args.model, args.scenes, args.two_images, args.seed)
    except TamxError as exc:
        raise SystemExit(f"error: {exc}") from None
    scores["seconds"] = round(time.perf_counter() - started, 1)
    print(format_scores(scores))
    for example in scores["wrong_examples"]:
        print(f"  truth: {example['truth']}\n  said:  {example['said']}")
    print(f"{scores['seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()
