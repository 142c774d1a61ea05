"""Does an auxiliary per-cell loss teach the demo model's vision tower shape *for the captions*?

`shapes_vision_probe.py` showed that the demo's vision tower learns shape from direct per-cell
labels (after a sharp onset near step 600-700). This experiment continues the vision stage of
the bundled model (its frozen LM is the text stage's LM, as in training) with the caption loss
plus `--weight` times the cross-entropy of two linear heads on the vision features (every
cell's colour and shape, 7 and 5 classes with "background"; the heads are scaffolding and are
not part of the model). Every `--eval-every` steps it reports, on `--held-out` (64) held-out scenes, the
teacher-forced top-1 accuracy of the colour and shape words of the true caption (is the true
word the model's first choice?) and the heads' per-cell accuracy on object cells.

    nice -n 15 python benchmarks/shapes_cell_loss.py --steps 800 [--weight 1.0] [--lr 1e-3] [--minutes 12]
        [--fresh-vision]

One thread, seeded, deterministic; stops at --steps or after --minutes.
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

from tamx.pipeline.demo import MODEL_DIR
from tamx.pipeline.demo.train import GRID, Sequences, batch, loss_of, pixels, set_trainable

from benchmarks.shapes_vision_probe import cell_targets
from tamx.shapes import COLOURS, SHAPES, make_scene


def vision_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The LLaVA feature layer of the vision tower, CLS dropped: [B, GRID*GRID, width]."""
    out = model.model.vision_tower(pixel_values=pixel_values, output_hidden_states=True)
    return out.hidden_states[model.config.vision_feature_layer][:, 1:]


def held_out(seqs: Sequences, n: int):
    rng = np.random.default_rng([13, 777])
    scenes = [make_scene(rng) for _ in range(n)]
    rows = [seqs.sample([s], rng, text=False)[0] for s in scenes]
    length = max(len(r) for r in rows)
    ids = torch.full((n, length), seqs.tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    targets = [cell_targets(s, GRID) for s in scenes]
    cells = [torch.from_numpy(np.stack([t[k] for t in targets])) for k in range(3)]
    return ids, mask, pixels([s.image for s in scenes]), cells


def evaluate(model, heads, seqs: Sequences, data) -> dict[str, float]:
    ids, mask, pv, (colour, shape, objects) = data
    colour_ids = {seqs.word_ids[w] for w in COLOURS}
    shape_ids = {seqs.word_ids[w] for w in SHAPES}
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, pixel_values=pv).logits
        features = vision_features(model, pv)
        c_pred, s_pred = heads[0](features).argmax(-1), heads[1](features).argmax(-1)
    pred = logits[:, :-1].argmax(-1)
    target = ids[:, 1:]
    is_colour = torch.tensor([[t in colour_ids for t in row] for row in target.tolist()])
    is_shape = torch.tensor([[t in shape_ids for t in row] for row in target.tolist()])
    on = objects >= 0
    return {
        "top1_colour": float((pred == target)[is_colour].float().mean()),
        "top1_shape": float((pred == target)[is_shape].float().mean()),
        "head_colour_cell": float((c_pred[on] == colour[on]).float().mean()),
        "head_shape_cell": float((s_pred[on] == shape[on]).float().mean()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--weight", type=float, default=1.0, help="weight of the per-cell loss (0: captions only)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--minutes", type=float, default=12.0)
    parser.add_argument("--fresh-vision", action="store_true", help="re-initialise the vision tower and projector")
    parser.add_argument("--held-out", type=int, default=64, help="held-out scenes for the accuracies")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from transformers import AutoTokenizer, LlavaForConditionalGeneration

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    model = LlavaForConditionalGeneration.from_pretrained(MODEL_DIR, dtype=torch.float32)
    if args.fresh_vision:
        for module in (*model.model.vision_tower.modules(), *model.model.multi_modal_projector.modules()):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    seqs = Sequences(AutoTokenizer.from_pretrained(MODEL_DIR))
    width = model.config.vision_config.hidden_size
    heads = torch.nn.ModuleList([torch.nn.Linear(width, len(COLOURS) + 1), torch.nn.Linear(width, len(SHAPES) + 1)])
    params = set_trainable(model, "vision") + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    data = held_out(seqs, args.held_out)
    model.eval()
    print(json.dumps({"config": vars(args), "step": 0, **evaluate(model, heads, seqs, data)}), flush=True)
    model.train()
    start = time.time()
    for step in range(args.steps):
        cosine = 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 30) * (0.1 + 0.9 * cosine)
        rng = np.random.default_rng([args.seed, 5, step])
        # one-image batches, drawn as train.py draws them; the same rng then gives the scenes' cell labels
        scene_rng = np.random.default_rng([args.seed, 5, step])
        ids, mask, weights, cols, pv = batch(seqs, rng, args.batch, False, 0.0, 0.0)
        scene_rng.random()  # batch() first draws whether the batch holds two-image questions
        scenes = [make_scene(scene_rng) for _ in range(args.batch)]
        if not torch.equal(pixels([s.image for s in scenes]), pv):
            raise RuntimeError("the cell labels are not those of the batch's scenes: batch() draws differently")
        caption, _ = loss_of(model, ids, mask, weights, cols, pv)
        loss = caption
        if args.weight:
            targets = [cell_targets(s, GRID) for s in scenes]
            colour, shape = (torch.from_numpy(np.stack([t[k] for t in targets])) for k in range(2))
            features = vision_features(model, pv)
            cells = F.cross_entropy(heads[0](features).flatten(0, 1), colour.flatten()) + F.cross_entropy(
                heads[1](features).flatten(0, 1), shape.flatten()
            )
            loss = caption + args.weight * cells
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        last = step + 1 == args.steps or time.time() - start > 60 * args.minutes
        if (step + 1) % args.eval_every == 0 or last:
            model.eval()
            record = {"step": step + 1, "caption_loss": round(caption.item(), 4), **evaluate(model, heads, seqs, data)}
            record["minutes"] = round((time.time() - start) / 60, 2)
            model.train()
            print(json.dumps(record), flush=True)
        if last:
            break


if __name__ == "__main__":
    main()
