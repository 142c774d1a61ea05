"""Can the demo model's vision tower learn shape at all? Direct per-cell labels, no LM.

The issue behind the demo model v2 (13) measured that the features the LM receives at the image
positions carry colour (0.998 per cell) but not shape (0.32, chance 0.25). This experiment takes
the LM out: a CLIP vision tower of the demo's configuration (or a variant) is trained from
scratch with two linear heads on its per-cell features (the LLaVA feature layer, CLS dropped),
supervised directly with every cell's colour and shape (7 and 5 classes with "background";
`tamx.shapes.cell_labels`, cover >= 0.5). It reports held-out accuracy on object cells (shape
chance 0.25) and per object (majority vote of its cells), so a configuration that cannot learn
shape even from direct labels is told apart from one that the caption loss fails to teach.

    nice -n 15 python benchmarks/shapes_vision_probe.py --steps 600 [--patch 14] [--layers 3]
        [--hidden 96] [--lr 1e-3] [--batch 16] [--feature-layer -1] [--minutes 12]

One thread, seeded, deterministic; stops at --steps or after --minutes, whichever comes first.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx.pipeline.demo.train import pixels

from tamx.shapes import COLOURS, IMAGE_SIZE, SHAPES, cell_labels, make_scene


def cell_targets(scene, grid: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cell [grid*grid]: colour class (0 = background), shape class (0 = background), object index (-1)."""
    labels = cell_labels(scene, grid).ravel()
    colour = np.zeros(labels.shape, np.int64)
    shape = np.zeros(labels.shape, np.int64)
    names = list(COLOURS)
    for i, obj in enumerate(scene.objects):
        colour[labels == i] = names.index(obj.colour) + 1
        shape[labels == i] = SHAPES.index(obj.shape) + 1
    return colour, shape, labels


def draw(rng: np.random.Generator, n: int, grid: int):
    scenes = [make_scene(rng) for _ in range(n)]
    targets = [cell_targets(s, grid) for s in scenes]
    stack = [torch.from_numpy(np.stack([t[k] for t in targets])) for k in range(3)]
    return pixels([s.image for s in scenes]), *stack


class Probe(torch.nn.Module):
    def __init__(self, args):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        config = CLIPVisionConfig(
            hidden_size=args.hidden,
            intermediate_size=4 * args.hidden,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            image_size=IMAGE_SIZE,
            patch_size=args.patch,
        )
        self.tower = CLIPVisionModel(config)
        self.layer = args.feature_layer
        self.colour = torch.nn.Linear(args.hidden, len(COLOURS) + 1)
        self.shape = torch.nn.Linear(args.hidden, len(SHAPES) + 1)

    def forward(self, pixel_values):
        out = self.tower(pixel_values=pixel_values, output_hidden_states=True)
        features = out.hidden_states[self.layer][:, 1:]  # LLaVA's "default": CLS dropped
        return self.colour(features), self.shape(features)


def evaluate(model, data, grid: int) -> dict[str, float]:
    pv, colour, shape, objects = data
    with torch.no_grad():
        colour_logits, shape_logits = model(pv)
    on = objects >= 0
    c_pred, s_pred = colour_logits.argmax(-1), shape_logits.argmax(-1)
    votes_c, votes_s = [], []
    for b in range(len(pv)):
        for i in range(int(objects[b].max()) + 1):
            cells = objects[b] == i
            votes_c.append(float(torch.mode(c_pred[b][cells]).values == colour[b][cells][0]))
            votes_s.append(float(torch.mode(s_pred[b][cells]).values == shape[b][cells][0]))
    return {
        "colour_cell": float((c_pred[on] == colour[on]).float().mean()),
        "shape_cell": float((s_pred[on] == shape[on]).float().mean()),
        "colour_object": float(np.mean(votes_c)),
        "shape_object": float(np.mean(votes_s)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--patch", type=int, default=14)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--feature-layer", type=int, default=-1)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    grid = IMAGE_SIZE // args.patch
    if grid * args.patch != IMAGE_SIZE:
        raise SystemExit(f"--patch must divide {IMAGE_SIZE}")
    model = Probe(args)
    held_out = draw(np.random.default_rng([args.seed, 99]), 64, grid)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    start = time.time()
    print(json.dumps({"config": vars(args), "grid": grid}), flush=True)
    for step in range(args.steps):
        for group in opt.param_groups:
            cosine = 0.5 * (1 + math.cos(math.pi * step / args.steps))
            group["lr"] = args.lr * min(1.0, (step + 1) / 30) * (0.1 + 0.9 * cosine)
        pv, colour, shape, _ = draw(np.random.default_rng([args.seed, step]), args.batch, grid)
        colour_logits, shape_logits = model(pv)
        loss = F.cross_entropy(colour_logits.flatten(0, 1), colour.flatten()) + F.cross_entropy(
            shape_logits.flatten(0, 1), shape.flatten()
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        last = step + 1 == args.steps or time.time() - start > 60 * args.minutes
        if (step + 1) % args.eval_every == 0 or last:
            model.eval()
            record = {"step": step + 1, "loss": round(loss.item(), 4), **evaluate(model, held_out, grid)}
            record["minutes"] = round((time.time() - start) / 60, 2)
            model.train()
            print(json.dumps(record), flush=True)
        if last:
            break


if __name__ == "__main__":
    main()
