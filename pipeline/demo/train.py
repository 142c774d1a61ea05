"""Train the bundled toy VLM on the shapes world (seeded, CPU, resumable).

A LLaVA-1.5-architecture model (tiny CLIP vision tower, 168 px, patch 14: a 12x12 grid; a
projector; a small Llama LM with tied embeddings) is trained in the staged recipe of real VLMs:

1. `text`: the LM alone, on text. The vision positions hold a "region" of words laid out like
   the image: each cell covered by an object holds its colour or its shape word, the others a
   filler token, and the caption that follows names the objects left to right (a copy task).
   Each region word carries a learned column code (the position that CLIP's features carry), and
   only a growing share of the filler cells is kept (5% -> 100% over the first 60% of the stage):
   on full 144-cell regions from the start the LM had not learnt to copy after 200 steps.
2. `vision`: the LM frozen entirely; the vision tower and projector learn to caption real images.
3. `joint` (optional): everything, at a low learning rate.

Issue 6's trial found that from scratch such a model learns to caption but its vision positions do
not localize; both the text pretraining and the frozen LM are needed. The processor is a `LlavaProcessor`
(CLIPImageProcessor + a byte-level BPE tokenizer): it builds without torchvision.

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
    """Steps, batch and learning rates of the three stages."""

    seed: int = 0
    steps_text: int = 500
    steps_vision: int = 2000
    steps_joint: int = 0
    batch: int = 16
    lr_text: float = 2e-3
    lr_vision: float = 1e-3
    lr_joint: float = 2e-4
    two_image_fraction: float = 0.1
    region_loss_weight: float = 0.0
    checkpoint_every: int = 100
    threads: int = 1
    size: ModelSize = field(default_factory=ModelSize)


def corpus() -> list[str]:
    """Texts the tokenizer is trained on: every word of the world as a whole token."""
    words = [*COLOURS, *SHAPES, "a", "and"]
    lines = [f"USER: {PROMPT} ASSISTANT:", f"USER: {PROMPT_TWO} ASSISTANT:"]
    lines += [f"a {c} {s} and a {c} {s}." for c in COLOURS for s in SHAPES]
    lines += [" ".join(words)] * 20
    return lines * 10


def build_tokenizer():
    """A byte-level BPE tokenizer with LLaVA's special tokens and a filler token; each world word is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus(), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
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

    def region(self, scene: Scene, rng: np.random.Generator, keep: float = 1.0) -> tuple[list[int], list[int]]:
        """The words standing in for an image and their columns: on an object's cells its colour and its
        shape word (each at least once, in random cells), the filler token elsewhere; only a random
        share `keep` of the filler cells is kept (a curriculum: copying is learnt on short regions first)."""
        labels = cell_labels(scene, GRID).ravel()
        out = np.full(labels.shape, self.filler_id, np.int64)
        for i, obj in enumerate(scene.objects):
            cells = rng.permutation(np.flatnonzero(labels == i))
            colour = rng.random(len(cells)) < 0.5
            if len(cells) >= 2:
                colour[:2] = [True, False]
            out[cells] = np.where(colour, self.word_ids[obj.colour], self.word_ids[obj.shape])
        kept = np.flatnonzero((labels >= 0) | (rng.random(labels.shape) < keep))
        return out[kept].tolist(), (kept % GRID).tolist()

    def sample(
        self, scenes: list[Scene], rng: np.random.Generator, text: bool, keep: float = 1.0
    ) -> tuple[list[int], list[float], list[int]]:
        """ids, per-position loss weights (on the token each position predicts) and the column of each
        region cell (-1 elsewhere) for one sample."""
        prompt = self.prompt_ids(len(scenes))
        ids, weights, cols, k = [], [], [], 0
        for t in prompt:
            if t == self.image_id:
                if text:
                    block, block_cols = self.region(scenes[k], rng, keep)
                else:
                    block, block_cols = [self.image_id] * (GRID * GRID), [-1] * (GRID * GRID)
                ids += block
                weights += [0.0] * len(block)
                cols += block_cols
                k += 1
            else:
                ids.append(t)
                weights.append(0.0)
                cols.append(-1)
        answer = " ".join(s.caption for s in scenes)
        answer_ids = self.tok(answer, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        ids += answer_ids
        weights += [1.0] * len(answer_ids)
        cols += [-1] * len(answer_ids)
        return ids, weights, cols


def batch(
    seqs: Sequences,
    rng: np.random.Generator,
    n: int,
    text: bool,
    two_fraction: float,
    region_weight: float,
    keep: float = 1.0,
):
    """A padded batch: input_ids, attention_mask, target weights [B, L-1], pixel_values or None."""
    rows, images = [], []
    # a batch is all one-image or all two-image (half as many samples), so padding costs nothing
    count = 2 if rng.random() < two_fraction else 1
    for _ in range(n // count):
        scenes = [make_scene(rng) for _ in range(count)]
        ids, w, c = seqs.sample(scenes, rng, text, keep)
        if text and region_weight:
            region = {*seqs.word_ids.values(), seqs.filler_id}
            w = [region_weight if t in region and wi == 0 else wi for t, wi in zip(ids, w)]
        rows.append((ids, w, c))
        images += [s.image for s in scenes]
    length = max(len(r[0]) for r in rows)
    n = len(rows)
    input_ids = torch.full((n, length), seqs.tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, length), dtype=torch.long)
    weights = torch.zeros((n, length), dtype=torch.float32)
    cols = torch.full((n, length), -1, dtype=torch.long)
    for i, (ids, w, c) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
        weights[i, : len(w)] = torch.tensor(w)
        cols[i, : len(c)] = torch.tensor(c)
    return input_ids, mask, weights, cols, (None if text else pixels(images))


class ColumnCodes(torch.nn.Module):
    """A learned vector per grid column, added to the region words in text pretraining only.

    Real image features carry where they are (CLIP's position embeddings); the column codes give the
    text stand-in the same information, so the LM can learn to list objects left to right. They are
    not part of the shipped model: in stage 2 the vision tower learns to produce such features itself.
    """

    def __init__(self, hidden: int):
        super().__init__()
        self.codes = torch.nn.Parameter(torch.randn(GRID, hidden) * 0.02)

    def forward(self, embeds: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return embeds + self.codes[cols.clamp(min=0)] * (cols >= 0).unsqueeze(-1).to(embeds.dtype)


def loss_of(model, input_ids, mask, weights, cols, pixel_values, columns: ColumnCodes | None = None):
    """Weighted next-token cross-entropy; weights[:, p] weighs the prediction of ids[:, p] from p-1."""
    if pixel_values is None and columns is not None:
        embeds = columns(model.get_input_embeddings()(input_ids), cols)
        out = model(inputs_embeds=embeds, attention_mask=mask)
    else:
        out = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values)
    logits = out.logits[:, :-1].float()
    target = input_ids[:, 1:]
    w = weights[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view_as(w)
    answer = (w == 1.0).float()
    word_acc = ((logits.argmax(-1) == target).float() * answer).sum() / answer.sum().clamp(min=1)
    return (ce * w).sum() / w.sum().clamp(min=1e-6), float(word_acc)


STAGES = ("text", "vision", "joint")


def set_trainable(model, stage: str) -> list[torch.nn.Parameter]:
    lm = model.model.language_model
    for p in model.parameters():
        p.requires_grad = stage in ("text", "joint")
    if stage == "text":
        for p in list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters()):
            p.requires_grad = False
    if stage == "vision":
        for p in list(model.model.vision_tower.parameters()) + list(model.model.multi_modal_projector.parameters()):
            p.requires_grad = True
        for p in lm.parameters():
            p.requires_grad = False
    return [p for p in model.parameters() if p.requires_grad]


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


def train(out: str | Path, settings: TrainSettings, log_every: int = 10) -> Path:
    """Run (or resume) the three stages, checkpointing to `out`; returns the final checkpoint folder.

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
    columns = ColumnCodes(settings.size.lm_hidden)
    seqs = Sequences(tokenizer)
    done = {s: 0 for s in STAGES}
    state = torch.load(state_path, weights_only=False) if state_path.exists() else {}
    if state:
        model.load_state_dict(state["model"])
        columns.load_state_dict(state["columns"])
        done = state["done"]
        log.info("resuming from %s: %s", state_path, done)
    (out / "settings.json").write_text(json.dumps(asdict(settings), indent=1))
    with (out / "log.jsonl").open("a") as logfile:
        _stages(model, columns, seqs, settings, done, state, out, logfile, log_every)
    model.eval()
    return save_pretrained(model, tokenizer, out / "final")


def _stages(
    model, columns, seqs, settings: TrainSettings, done: dict, state: dict, out: Path, logfile, log_every: int
) -> None:
    """The stages' training loops from the steps in `done` on (optimiser state from the checkpoint `state`),
    checkpointing to `out`."""
    state_path = out / "state.pt"
    steps = {"text": settings.steps_text, "vision": settings.steps_vision, "joint": settings.steps_joint}
    lrs = {"text": settings.lr_text, "vision": settings.lr_vision, "joint": settings.lr_joint}
    torch.manual_seed(settings.seed)
    for stage in STAGES:
        if done[stage] >= steps[stage]:
            continue
        params = set_trainable(model, stage)
        if stage == "text":
            params += list(columns.parameters())
        opt = torch.optim.AdamW(params, lr=lrs[stage], weight_decay=0.01, betas=(0.9, 0.98))
        if state.get("stage") == stage and "opt" in state:
            opt.load_state_dict(state["opt"])
        model.train()
        start = time.time()
        for step in range(done[stage], steps[stage]):
            # each step draws from its own seed, so a resumed run sees the same data as an unbroken one
            rng = np.random.default_rng([settings.seed, STAGES.index(stage), step])
            warm = min(1.0, (step + 1) / 30)
            cosine = 0.5 * (1 + math.cos(math.pi * step / steps[stage]))
            for group in opt.param_groups:
                group["lr"] = lrs[stage] * warm * (0.1 + 0.9 * cosine)
            text = stage == "text"
            # the share of filler cells kept in text regions grows from 5% to all over the first 60% of the stage
            keep = min(1.0, 0.05 + step / (0.6 * steps[stage]))
            ids, mask, weights, cols, pv = batch(
                seqs,
                rng,
                settings.batch,
                text,
                settings.two_image_fraction,
                settings.region_loss_weight if text else 0,
                keep,
            )
            loss, acc = loss_of(model, ids, mask, weights, cols, pv, columns)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            done[stage] = step + 1
            if step % log_every == 0 or step + 1 == steps[stage]:
                record = {"stage": stage, "step": step, "loss": round(loss.item(), 4), "word_acc": round(acc, 3)}
                record["minutes"] = round((time.time() - start) / 60, 2)
                logfile.write(json.dumps(record) + "\n")
                logfile.flush()
                log.info("%s", record)
            if (step + 1) % settings.checkpoint_every == 0 or step + 1 == steps[stage]:
                state = {"model": model.state_dict(), "columns": columns.state_dict(), "opt": opt.state_dict()}
                state.update(done=dict(done), stage=stage)
                torch.save(state, out / "state.tmp")
                (out / "state.tmp").replace(state_path)


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
