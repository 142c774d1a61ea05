"""A saved LLaVA model whose answer provably depends on one region of one image: the toy model's
architecture and processor with hand-set weights, written as a model folder (`--model PATH`).

The weights (no custom modeling code):

- vision tower: the patch embedding averages a patch's raw intensity (0 on black pixels), the
  position embedding flags the patches of the region and adds constant channels that keep the
  layer norm near linear; the encoder layers are identities (zero output projections);
- projector: a GELU gate passes a flagged patch's intensity and nothing of any other patch;
- language model: layer 0's attention has zero queries and keys, so every position averages
  the gated intensities of the image tokens before it into one channel (every other layer is an
  identity); the untied LM head gives each answer token a logit affine in that channel, plus a
  bonus where the input token is the one before it in the answer (a bigram of the caption).

So every answer token's probability is above 0.5 with the region as it is and below 0.05 with
the region black, and no pixel outside the region changes any logit.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import torch

R, K, S = 0, 1, 2  # language-model channels: constant reference, image intensity, attention mean
FLAG, SHIFT_UP, SHIFT_DOWN = 1, 2, 3  # vision channels beside 0 (intensity)
LOW, HIGH, BONUS = -3.0, 6.0, 4.0  # an answer token's logit: region black, region as it is; its bigram's bonus


def write_planted_model(folder: Path, data: Path, sample_id: str) -> tuple[Path, str]:
    """Write a model folder for the shapes sample `sample_id` of the dataset at `data`; returns it
    and the category whose mask is the region (the sample's first named object)."""
    from tamx.pipeline.demo import MODEL_DIR
    from tamx.pipeline.encode.loading import load_processor
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from tamx.datasets import load_dataset

    record = {r.id: r for r in load_dataset("folder", data)}[sample_id]
    category, mask = next(iter(record.masks().items()))
    manifest = {json.loads(line)["id"]: json.loads(line) for line in (data / "manifest-true.jsonl").open()}
    entry = manifest[sample_id]
    processor = load_processor(str(MODEL_DIR))
    tokenizer = processor.tokenizer
    prompt = processor.apply_chat_template(entry["messages"], add_generation_prompt=True, tokenize=False)
    chain = [tokenizer(prompt)["input_ids"][-1], *tokenizer(entry["answer"], add_special_tokens=False)["input_ids"]]
    if len(set(chain[:-1])) != len(chain) - 1:
        raise ValueError(f"a token of {entry['answer']!r} follows two different ones: no bigram can plant it")

    config = LlavaConfig.from_pretrained(MODEL_DIR)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = False
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    image = cv2.cvtColor(cv2.imread(str(record.image)), cv2.COLOR_BGR2RGB)
    _plant_vision(model, processor, mask, image.shape[:2])
    _plant_language(model, chain)
    # the LM head: affine in the attention mean between the black region and the region as it is
    black = np.where(mask[..., None], 0, image).astype(np.uint8)
    states = [_final_states(model, processor, prompt, chain[1:], im) for im in (black, image)]
    low, high = (float(s[:, S].mean()) for s in states)
    reference = float(states[1][:, R].mean())
    gain = (HIGH - LOW) / (high - low)
    head = model.lm_head.weight
    with torch.no_grad():
        for j, token in enumerate(chain[1:]):
            head[token, S] = gain
            head[token, R] = (LOW - gain * low) / reference
            head[token, 3 + j] = BONUS / float(states[1][j, 3 + j])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    shutil.copy(MODEL_DIR / "generation_config.json", folder / "generation_config.json")
    return folder, category


def _plant_vision(model, processor, mask: np.ndarray, size: tuple[int, int]) -> None:
    """Patch intensity in channel 0, region flag and shift channels from the position embedding,
    a projector that gates intensity by the flag into the language model's channel K."""
    image_processor = processor.image_processor
    side, patch = image_processor.crop_size["height"], model.config.vision_config.patch_size
    if size != (side, side):
        raise ValueError(f"the planted model expects {side}x{side} images (no resize or crop), not {size}")
    grid = side // patch
    cover = cv2.resize(mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA) > 0
    vision = model.model.vision_tower
    mean, std = np.array(image_processor.image_mean), np.array(image_processor.image_std)
    with torch.no_grad():
        weight = vision.embeddings.patch_embedding.weight  # [C, 3, P, P] over (pixel / 255 - mean) / std
        for c in range(3):
            weight[0, c] = float(std[c]) / (3 * patch * patch)
        position = vision.embeddings.position_embedding.weight  # [1 + grid², C]: CLS, then patches row by row
        position[:, 0] = float(mean.mean())  # intensity 0 on a black patch
        position[:, SHIFT_UP], position[:, SHIFT_DOWN] = 100.0, -100.0
        position[1:, FLAG] = torch.as_tensor(cover.reshape(-1), dtype=torch.float32) * 10
        vision.pre_layrnorm.weight.fill_(1.0)
        # the layer norm of [s, 10 flag, 100, -100, 0...]: read it at a black patch inside and outside
        inside = _layer_norm(vision, 0.0, 10.0)
        outside = _layer_norm(vision, 0.0, 0.0)
        gain = 3 / (_layer_norm(vision, 1.0, 10.0)[0] - inside[0])  # a white patch: 3 before the GELU
        projector = model.model.multi_modal_projector
        projector.linear_1.weight[0, 0] = gain
        projector.linear_1.weight[0, FLAG] = 30 / (inside[FLAG] - outside[FLAG])  # outside: 30 below
        projector.linear_1.bias[0] = -gain * inside[0] - projector.linear_1.weight[0, FLAG] * inside[FLAG]
        projector.linear_2.weight[K, 0] = 1.0
        projector.linear_2.bias[R] = 10.0  # RMS-norm reference of an image token


def _layer_norm(vision, intensity: float, flag: float) -> torch.Tensor:
    x = torch.zeros(vision.pre_layrnorm.normalized_shape[0])
    x[0], x[FLAG], x[SHIFT_UP], x[SHIFT_DOWN] = intensity, flag, 100.0, -100.0
    return vision.pre_layrnorm(x)


def _plant_language(model, chain: list[int]) -> None:
    """Token embeddings (reference channel, one channel per token of the chain but the last), and
    layer 0's uniform attention that averages channel K into channel S."""
    language = model.model.language_model
    with torch.no_grad():
        language.embed_tokens.weight[:, R] = 10.0
        for j, token in enumerate(chain[:-1]):
            language.embed_tokens.weight[token, 3 + j] = 1.0
        language.norm.weight.fill_(1.0)
        layer = language.layers[0]
        layer.input_layernorm.weight.fill_(1.0)
        layer.self_attn.v_proj.weight[0, K] = 1.0  # head 0, dim 0; queries and keys are zero
        layer.self_attn.o_proj.weight[S, 0] = 10.0


def _final_states(model, processor, prompt: str, answer: list[int], image: np.ndarray) -> np.ndarray:
    """The final-norm states at the positions that predict the answer tokens: [N, hidden]."""
    inputs = processor(text=[prompt], images=[[image]], return_tensors="pt")
    ids = torch.cat([inputs["input_ids"], torch.as_tensor([answer])], dim=1)
    with torch.no_grad():
        out = model.model(
            input_ids=ids, pixel_values=inputs["pixel_values"], attention_mask=torch.ones_like(ids)
        ).last_hidden_state[0]
    return out[-len(answer) - 1 : -1].numpy()
