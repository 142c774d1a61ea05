"""Train the bundled toy VLM on the shapes world (seeded, deterministic, CPU, resumable).

A LLaVA-1.5-architecture model (tiny CLIP vision tower, 168 px, patch 14: a 12x12 grid; a
projector; a small Llama LM with tied embeddings) is trained from scratch in two stages:

1. `vision`: the vision tower and the projector alone. Linear heads on the projected features
   (what the LM receives at each image position) learn every cell's colour and shape
   (`cell_targets`). Shape is learnt late and suddenly (a
   plateau near chance, docs/demo.md), and these steps are about 3x cheaper than the whole
   model's.
2. `joint`: everything, with three losses: the caption's next-token cross-entropy, the same cell
   heads, and a naming loss at the LM's last layer over the image positions (an object's core
   cells name its colour and its shape, the cells it only partly covers its colour, the others a
   filler token), which is what the maps of tamx are made of (Eq. 1: the LM head on those hidden states).

The heads are training scaffolding: they are not part of the saved model. The processor is a
`LlavaProcessor` (CLIPImageProcessor + a byte-level BPE tokenizer): it builds without torchvision.

    python -m tamx.pipeline.demo.train --out runs/shapes-train --export pipeline/demo/model   # the bundled model

Re-running with the same --out resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from tamx.shapes import COLOURS, IMAGE_SIZE, PROMPT, PROMPT_TWO, SHAPES, Scene, cell_labels, make_scene

log = logging.getLogger(__name__)

PATCH = 14
GRID = IMAGE_SIZE // PATCH
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FILLER = "<bg>"
EDGE_COVER = 0.05  # a cell an object covers this much of names its colour
SPECIAL = ["<unk>", "<s>", "</s>", "<image>", "<pad>", FILLER]
TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


@dataclass
class ModelSize:
    """Widths and depths of the toy model."""

    lm_hidden: int = 128
    lm_layers: int = 4
    lm_heads: int = 4
    lm_intermediate: int = 384
    vision_hidden: int = 96
    vision_layers: int = 3
    vision_heads: int = 4
    vision_intermediate: int = 384


@dataclass
class TrainSettings:
    """Steps, batch, learning rate and loss weights of the two training stages."""

    seed: int = 0
    # stage 1: the vision tower and projector alone learn every cell's colour and shape (the
    # cell losses; ~3x cheaper a step than the whole model). Stage 2: everything, all three losses.
    vision_steps: int = 1500
    steps: int = 4000
    batch: int = 16
    lr: float = 1e-3
    two_image_fraction: float = 0.25
    # the vision heads: every cell's colour and shape, read off what the LM receives
    cell_loss_weight: float = 1.0
    # the LM's last layer at the image positions: an object's cells name its colour and its shape
    name_loss_weight: float = 0.5
    # background cells weigh this much against an object's cells in both cell losses
    background_weight: float = 0.25
    checkpoint_every: int = 200
    eval_every: int = 500
    threads: int = 1
    size: ModelSize = field(default_factory=ModelSize)


def corpus() -> list[str]:
    """Texts the tokenizer is trained on: every word of the world as a whole token."""
    words = [*COLOURS, *SHAPES, "a", "and"]
    lines = [f"USER: {PROMPT} ASSISTANT:", f"USER: {PROMPT_TWO} ASSISTANT:"]
    lines += [f"a {c} {s} and a {c} {s}." for c in COLOURS for s in SHAPES]
    lines += [" ".join(words)] * 20
    return lines * 10


def byte_level_bpe(texts: list[str], special: list[str], vocab_size: int, **roles: str):
    """A byte-level BPE tokenizer trained on `texts`, with `special` as its special tokens and
    `roles` naming them (bos_token="<s>", ...): the toy model's, and the stand-ins the tests and
    benchmarks build for each family."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **roles)


def build_tokenizer():
    """A byte-level BPE tokenizer with LLaVA's special tokens and a filler token; each world word is one token."""
    tokenizer = byte_level_bpe(
        corpus(), SPECIAL, 400, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.chat_template = TEMPLATE
    return tokenizer


def build_model(tokenizer, size: ModelSize, seed: int):
    """A LLaVA-1.5 model of the given size, initialised from `seed`."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    config = LlavaConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": size.lm_hidden,
            "intermediate_size": size.lm_intermediate,
            "num_hidden_layers": size.lm_layers,
            "num_attention_heads": size.lm_heads,
            "num_key_value_heads": size.lm_heads,
            "max_position_embeddings": 1024,
            "tie_word_embeddings": True,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": size.vision_hidden,
            "intermediate_size": size.vision_intermediate,
            "num_hidden_layers": size.vision_layers,
            "num_attention_heads": size.vision_heads,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
            "projection_dim": size.vision_hidden,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        image_seq_length=GRID * GRID,
        tie_word_embeddings=True,
    )
    return LlavaForConditionalGeneration(config)


def build_image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def pixels(images: list[np.ndarray]) -> torch.Tensor:
    """[N, 3, S, S] float32 normalised as the CLIPImageProcessor above does (images are already S x S)."""
    x = np.stack(images).astype(np.float32) / 255.0
    x = (x - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(x.transpose(0, 3, 1, 2).copy())


class Sequences:
    """Token sequences of the recipe, built from the tokenizer (no processor needed)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.image_id = tokenizer.convert_tokens_to_ids("<image>")
        self.filler_id = tokenizer.convert_tokens_to_ids(FILLER)
        self.word_ids = {w: self._one(w) for w in [*COLOURS, *SHAPES]}

    def _one(self, word: str) -> int:
        ids = self.tok(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"the tokenizer splits {word!r} into {len(ids)} tokens")
        return ids[0]

    def prompt_ids(self, n_images: int) -> list[int]:
        content = [{"type": "image"}] * n_images + [{"type": "text", "text": PROMPT if n_images == 1 else PROMPT_TWO}]
        text = self.tok.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        return self.tok(text, add_special_tokens=True)["input_ids"]

    def sample(self, scenes: list[Scene]) -> tuple[list[int], list[float]]:
        """ids (the processor's: GRID*GRID placeholders per image) and per-position loss weights (1 on the
        answer: weights[p] weighs the prediction of ids[p] from p-1)."""
        ids = []
        for t in self.prompt_ids(len(scenes)):
            ids += [t] * (GRID * GRID) if t == self.image_id else [t]
        answer = " ".join(s.caption for s in scenes)
        answer_ids = self.tok(answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        return ids + answer_ids, [0.0] * len(ids) + [1.0] * len(answer_ids)


@dataclass
class Batch:
    """A padded batch: ids and mask [B, L], answer weights [B, L], pixels [I, 3, S, S] and the cell targets
    of its I images in order (`CellTargets` fields, stacked: [I, GRID*GRID], names [I, GRID*GRID, 2])."""

    input_ids: torch.Tensor
    mask: torch.Tensor
    weights: torch.Tensor
    pixel_values: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    name_ids: torch.Tensor
    name_weights: torch.Tensor
    scenes: list[list[Scene]]


@dataclass
class CellTargets:
    """Per cell of one image [GRID*GRID]: the vision heads' classes (colour, shape: class + 1 on an
    object's core cells, 0 elsewhere) and the naming target of the LM's last layer there: two
    vocabulary ids [V, 2] with their probabilities [V, 2], the rest of the probability on the filler."""

    colour: np.ndarray
    shape: np.ndarray
    name_ids: np.ndarray
    name_weights: np.ndarray


def cell_targets(scene: Scene, seqs: Sequences) -> CellTargets:
    """The cell targets of one scene.

    An object's core cells (`cell_labels`) name its colour and its shape, half each. A cell it only
    covers partly (at least `EDGE_COVER`) names its colour with the share it covers (the colour is
    in its pixels; the shape is the whole object's) and the filler otherwise; other cells name the
    filler. So a colour word's map is a little wider than its shape word's and peaks on the core:
    ECI subtracts the preceding colour word's map from the shape word's (Eq. 4: the hidden state at
    "red" predicts "circle"), and two equal maps would cancel (measured: docs/demo.md).
    """
    labels = cell_labels(scene, GRID).ravel()
    colour = np.zeros(labels.size, np.int64)
    shape = np.zeros(labels.size, np.int64)
    name_ids = np.full((labels.size, 2), seqs.filler_id, np.int64)
    name_weights = np.zeros((labels.size, 2), np.float32)
    for i, obj in enumerate(scene.objects):
        cover = cv2.resize(obj.mask.astype(np.float32), (GRID, GRID), interpolation=cv2.INTER_AREA).ravel()
        edge = (cover >= EDGE_COVER) & (labels < 0) & (cover > name_weights[:, 0])
        name_ids[edge, 0] = seqs.word_ids[obj.colour]
        name_weights[edge, 0] = np.minimum(cover[edge], 0.5)
        core = labels == i
        colour[core] = list(COLOURS).index(obj.colour) + 1
        shape[core] = SHAPES.index(obj.shape) + 1
        name_ids[core] = [seqs.word_ids[obj.colour], seqs.word_ids[obj.shape]]
        name_weights[core] = 0.5
    return CellTargets(colour, shape, name_ids, name_weights)


def make_batch(
    seqs: Sequences, rng: np.random.Generator, n: int, two_fraction: float, groups: list[list[Scene]] | None = None
) -> Batch:
    """`n` images of fresh scenes from `rng` (all one-image samples, or with probability `two_fraction` all
    two-image questions, half as many, so padding costs nothing), or the given scene groups."""
    if groups is None:
        count = 2 if rng.random() < two_fraction else 1
        groups = [[make_scene(rng) for _ in range(count)] for _ in range(n // count)]
    rows = [seqs.sample(g) for g in groups]
    length = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), length), seqs.tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    weights = torch.zeros((len(rows), length), dtype=torch.float32)
    for i, (ids, w) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        weights[i, : len(w)] = torch.tensor(w)
    flat = [s for g in groups for s in g]
    cells = [cell_targets(s, seqs) for s in flat]
    stacked = [torch.from_numpy(np.stack([getattr(c, f.name) for c in cells])) for f in dataclasses.fields(CellTargets)]
    return Batch(input_ids, mask, weights, pixels([s.image for s in flat]), *stacked, scenes=groups)


class CellHeads(torch.nn.Module):
    """Linear read-outs of every cell's colour and shape from the image features the LM receives
    (training scaffolding: they are not part of the shipped model)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.colour = torch.nn.Linear(hidden, len(COLOURS) + 1)
        self.shape = torch.nn.Linear(hidden, len(SHAPES) + 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.colour(features), self.shape(features)


def _cell_mean(values: torch.Tensor, on: torch.Tensor, background: float) -> torch.Tensor:
    weight = torch.where(on, 1.0, background)
    return (values * weight).sum() / weight.sum()


def _cell_loss(outputs, b: Batch, settings: TrainSettings) -> torch.Tensor:
    """The vision heads' cross-entropy, colour + shape, each a cell mean (object cells weigh 1)."""
    on = (b.colour > 0).reshape(-1)
    return sum(
        _cell_mean(F.cross_entropy(x, y.reshape(-1), reduction="none"), on, settings.background_weight)
        for x, y in zip(outputs, (b.colour, b.shape))
    )


def losses(model, heads: CellHeads, b: Batch, seqs: Sequences, settings: TrainSettings) -> dict[str, torch.Tensor]:
    """The three losses of a batch: the caption's next-token cross-entropy, the vision heads' per-cell
    cross-entropy, and the naming loss of the LM's last layer at the image positions; plus `total`."""
    out = model(input_ids=b.input_ids, attention_mask=b.mask, pixel_values=b.pixel_values, output_hidden_states=True)
    logits = out.logits[:, :-1].float()
    target, w = b.input_ids[:, 1:], b.weights[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view_as(w)
    caption = (ce * w).sum() / w.sum()
    image = b.input_ids == seqs.image_id  # row-major, images in order: the same order as the cell labels
    named_cells = (b.name_weights[..., 0] > 0).reshape(-1)
    features = out.hidden_states[0][image]  # what the LM receives at the image positions
    cell = _cell_loss(heads(features), b, settings)
    logp = F.log_softmax(out.logits[image].float(), dim=-1)
    w = b.name_weights.reshape(-1, 2)
    named = (w * logp.gather(1, b.name_ids.reshape(-1, 2))).sum(1) + (1 - w.sum(1)) * logp[:, seqs.filler_id]
    name = _cell_mean(-named, named_cells, settings.background_weight)
    total = caption + settings.cell_loss_weight * cell + settings.name_loss_weight * name
    return {"total": total, "caption": caption, "cell": cell, "name": name}


def image_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The projected image features [I * GRID*GRID, lm_hidden] the LM receives, images in order (no LM pass)."""
    return torch.cat(model.model.get_image_features(pixel_values=pixel_values).pooler_output)


def vision_losses(model, heads: CellHeads, b: Batch, settings: TrainSettings) -> dict[str, torch.Tensor]:
    """Stage 1: the vision heads' per-cell cross-entropy on the projected image features alone."""
    features = image_features(model, b.pixel_values)
    cell = _cell_loss(heads(features), b, settings)
    return {"total": cell, "cell": cell}


@torch.no_grad()
def cell_accuracy(model, heads: CellHeads, held_out: Batch) -> dict[str, float]:
    """The vision heads' accuracy on the object cells of held-out images: colour, shape."""
    model.eval()
    features = image_features(model, held_out.pixel_values)
    model.train()
    on = (held_out.colour > 0).reshape(-1)
    labels = (held_out.colour, held_out.shape)
    return {
        f"cell_{name}": round(float((x.argmax(-1)[on] == y.reshape(-1)[on]).float().mean()), 3)
        for name, x, y in zip(("colour", "shape"), heads(features), labels)
    }


@torch.no_grad()
def evaluate(model, seqs: Sequences, held_out: Batch) -> dict[str, float]:
    """Teacher-forced scores on held-out scenes: the share of answers whose every token is the model's first
    choice (then greedy decoding says exactly the truth), by object count and for two-image questions,
    and the first-choice accuracy of the colour and shape words."""
    model.eval()
    logits = model(
        input_ids=held_out.input_ids, attention_mask=held_out.mask, pixel_values=held_out.pixel_values
    ).logits
    model.train()
    right = (logits[:, :-1].argmax(-1) == held_out.input_ids[:, 1:]) | (held_out.weights[:, 1:] == 0)
    exact = right.all(dim=1)
    target = held_out.input_ids[:, 1:]
    answer = held_out.weights[:, 1:] == 1
    colour_ids = torch.tensor([seqs.word_ids[c] for c in COLOURS])
    shape_ids = torch.tensor([seqs.word_ids[s] for s in SHAPES])
    is_colour, is_shape = answer & torch.isin(target, colour_ids), answer & torch.isin(target, shape_ids)
    scores = {
        "colour_word": float(right[is_colour].float().mean()),
        "shape_word": float(right[is_shape].float().mean()),
        "exact": float(exact.float().mean()),
    }
    for key, pick in (
        *((f"exact_{k}", [len(g) == 1 and len(g[0].objects) == k for g in held_out.scenes]) for k in (1, 2, 3)),
        ("exact_two_images", [len(g) == 2 for g in held_out.scenes]),
    ):
        pick = torch.tensor(pick)
        if pick.any():
            scores[key] = float(exact[pick].float().mean())
    return {k: round(v, 3) for k, v in scores.items()}


def held_out_batch(seqs: Sequences, n: int = 96, n_two: int = 32) -> Batch:
    """Scenes training never draws (their own seed stream): n one-image samples and n_two two-image ones."""
    rng = np.random.default_rng([12345, 7])
    groups = [[make_scene(rng)] for _ in range(n)] + [[make_scene(rng), make_scene(rng)] for _ in range(n_two)]
    return make_batch(seqs, rng, 0, 0.0, groups=groups)


def save_pretrained(model, tokenizer, folder: Path, dtype: torch.dtype | None = None) -> Path:
    """Model + LlavaProcessor pieces in one folder, loadable with from_pretrained and load_processor."""
    folder.mkdir(parents=True, exist_ok=True)
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    build_image_processor().save_pretrained(folder)
    processor_config = {
        "processor_class": "LlavaProcessor",
        "patch_size": PATCH,
        "vision_feature_select_strategy": "default",
        "num_additional_image_tokens": 1,
    }
    (folder / "processor_config.json").write_text(json.dumps(processor_config, indent=1))
    return folder


STAGES = ("vision", "joint")


def train(out: str | Path, settings: TrainSettings, log_every: int = 10) -> Path:
    """Run (or resume) the training, checkpointing to `out`; returns the final checkpoint folder.

    Reproducible: the same settings give bit-identical weights on the same machine (deterministic
    algorithms and `settings.threads` torch threads while training; every step's data from its own seed).
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(settings.threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _train(Path(out), settings, log_every)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train(out: Path, settings: TrainSettings, log_every: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.pt"
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, settings.size, settings.seed)
    heads = CellHeads(settings.size.lm_hidden)
    seqs = Sequences(tokenizer)
    done = {stage: 0 for stage in STAGES}
    state = torch.load(state_path, weights_only=False) if state_path.exists() else {}
    if state:
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        done = state["done"]
        log.info("resuming from %s at %s", state_path, done)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=1))
    held_out = held_out_batch(seqs)
    torch.manual_seed(settings.seed)
    model.train()
    with (out / "log.jsonl").open("a") as logfile:
        for stage, steps in zip(STAGES, (settings.vision_steps, settings.steps)):
            if done[stage] < steps:
                state = _stage(
                    model, heads, seqs, settings, stage, steps, done, state, held_out, out, logfile, log_every
                )
    model.eval()
    return save_pretrained(model, tokenizer, out / "final")


def _stage(model, heads, seqs, settings, stage, steps, done, state, held_out, out, logfile, log_every) -> dict:
    """One stage's loop from step done[stage] on (its optimiser state from `state` when it is this
    stage's), checkpointing to `out`; returns the last checkpoint."""
    if stage == "vision":
        params = [*model.model.vision_tower.parameters(), *model.model.multi_modal_projector.parameters()]
    else:
        params = list(model.parameters())
    params += list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.01, betas=(0.9, 0.98))
    if state.get("stage") == stage:
        opt.load_state_dict(state["opt"])
    start = time.time()
    for step in range(done[stage], steps):
        # each step draws from its own seed, so a resumed run sees the same data as an unbroken one
        rng = np.random.default_rng([settings.seed, STAGES.index(stage), step])
        warm = min(1.0, (step + 1) / 50)
        cosine = 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = settings.lr * warm * (0.05 + 0.95 * cosine)
        b = make_batch(seqs, rng, settings.batch, settings.two_image_fraction)
        if stage == "vision":
            parts = vision_losses(model, heads, b, settings)
        else:
            parts = losses(model, heads, b, seqs, settings)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        done[stage] = step + 1
        last = step + 1 == steps
        scored = (step + 1) % settings.eval_every == 0 or last
        if step % log_every == 0 or scored:
            record = {"stage": stage, "step": step, **{k: round(v.item(), 4) for k, v in parts.items()}}
            if scored:
                record.update(cell_accuracy(model, heads, held_out))
                if stage == "joint":
                    record.update(evaluate(model, seqs, held_out))
            record["minutes"] = round((time.time() - start) / 60, 2)
            logfile.write(json.dumps(record) + "\n")
            logfile.flush()
            log.info("%s", record)
        if (step + 1) % settings.checkpoint_every == 0 or last:
            state = {"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict()}
            state.update(done=dict(done), stage=stage)
            torch.save(state, out / "state.tmp")
            (out / "state.tmp").replace(out / "state.pt")
    return state


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="checkpoint folder (re-running resumes)")
    # every scalar setting of TrainSettings is an option, with its default from there (one source)
    for f in dataclasses.fields(TrainSettings):
        if f.type in ("int", "float", int, float):
            kind = int if f.type in ("int", int) else float
            parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=f.default)
    parser.add_argument("--export", default=None, help="also write the final model in float16 to this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    options = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings) if hasattr(args, f.name)}
    settings = TrainSettings(**options)
    final = train(args.out, settings)
    if args.export:
        from transformers import AutoTokenizer, LlavaForConditionalGeneration

        model = LlavaForConditionalGeneration.from_pretrained(final)
        save_pretrained(model, AutoTokenizer.from_pretrained(final), Path(args.export), dtype=torch.float16)
        log.info("exported %s", args.export)


if __name__ == "__main__":
    main()
