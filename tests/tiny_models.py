"""Tiny random-init VLMs of real families, saved like a downloaded checkpoint (no hub access).

Each builder writes config + weights, a byte-level BPE tokenizer carrying the family's
special tokens and chat template, and the family's image processor with class defaults
(the PIL backend when torchvision is missing) into a folder, loaded back through
`load_model(path)` / `load_processor(path)` like a user's `--model PATH`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

CORPUS = [
    "Describe the image in one sentence.",
    "What is in this picture? A cat sits on a red mat next to a dog.",
    "Compare the two images and the video: which one shows more people?",
    "The answer is a small house with a green door and two windows.",
]

QWEN2_VL_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def make_tokenizer(special: list[str], vocab: int = 300, **roles: str):
    """A byte-level BPE tokenizer trained on a few sentences, with `special` added as special tokens."""
    from tamx.pipeline.demo.train import byte_level_bpe

    return byte_level_bpe(CORPUS, special, vocab, **roles)


def _save(folder: Path, model, tokenizer, image_processor, template: str, processor_config: dict | None = None):
    folder.mkdir(parents=True, exist_ok=True)
    # Like a trained model, never predict a vision placeholder (its logit is 0, below the random maxima):
    # a generated placeholder would make the teacher-forced re-run see more placeholders than images.
    config = model.config
    placeholders = [getattr(config, n, None) for n in ("image_token_id", "video_token_id")]
    with torch.no_grad():
        for token_id in filter(lambda t: t is not None, placeholders):
            model.get_output_embeddings().weight[token_id] = 0
    tokenizer.chat_template = template
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    if processor_config:
        import json

        (folder / "processor_config.json").write_text(json.dumps(processor_config))
    return folder


_QWEN_VISION = {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 64}
# version -> (config class, model class, tiny vision config)
QWEN_VERSIONS = {
    "2": (
        "Qwen2VLConfig",
        "Qwen2VLForConditionalGeneration",
        {"depth": 1, "embed_dim": 32, "hidden_size": 64, "num_heads": 2, "mlp_ratio": 2},
    ),
    "2.5": (
        "Qwen2_5_VLConfig",
        "Qwen2_5_VLForConditionalGeneration",
        {**_QWEN_VISION, "window_size": 56, "fullatt_block_indexes": [1]},
    ),
    "3": (
        "Qwen3VLConfig",
        "Qwen3VLForConditionalGeneration",
        {**_QWEN_VISION, "num_position_embeddings": 64, "deepstack_visual_indexes": [0]},
    ),
}


def build_qwen2_vl(folder: Path, seed: int = 0, version: str = "2") -> Path:
    import transformers
    from transformers import Qwen2VLImageProcessor

    config_name, model_name, vision = QWEN_VERSIONS[version]
    vision = dict(vision)
    config_class, model_class = getattr(transformers, config_name), getattr(transformers, model_name)

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tokenizer = make_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    torch.manual_seed(seed)
    config = config_class(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0},
            "bos_token_id": None,
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    model = model_class(config).eval()
    # Qwen3-VL checkpoints ship the Qwen2-VL image processor with 16-pixel patches and 0.5 mean/std
    extra = {"patch_size": 16, "image_mean": [0.5] * 3, "image_std": [0.5] * 3} if version == "3" else {}
    image_processor = Qwen2VLImageProcessor(**extra)
    return _save(folder, model, tokenizer, image_processor, QWEN2_VL_TEMPLATE)


def build_llava(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration

    special = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
    tokenizer = make_tokenizer(special, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(seed)
    config = LlavaConfig(
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
            "projection_dim": 32,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
    )
    model = LlavaForConditionalGeneration(config).eval()
    processor_config = {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}
    return _save(folder, model, tokenizer, CLIPImageProcessor(), LLAVA_TEMPLATE, processor_config)


GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<start_of_image>"
    "{% elif item['type'] == 'text' %}{{ item['text'] | trim }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def build_gemma3(folder: Path, seed: int = 0) -> Path:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    special += ["<start_of_image>", "<end_of_image>", "<image_soft_token>"]
    tokenizer = make_tokenizer(
        special,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={
            "image_token": "<image_soft_token>",
            "boi_token": "<start_of_image>",
            "eoi_token": "<end_of_image>",
        },
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    torch.manual_seed(seed)
    config = Gemma3Config(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "sliding_window": 32,
            "bos_token_id": ids["<bos>"],
            "eos_token_id": [ids["<eos>"], ids["<end_of_turn>"]],
            "pad_token_id": ids["<pad>"],
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 224,
            "patch_size": 14,
        },
        mm_tokens_per_image=16,
        boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"],
    )
    model = Gemma3ForConditionalGeneration(config).eval()
    return _save(folder, model, tokenizer, Gemma3ImageProcessor(), GEMMA3_TEMPLATE, {"image_seq_length": 16})


INTERNVL_TEMPLATE = QWEN2_VL_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<IMG_CONTEXT>\n").replace(
    "<|vision_start|><|video_pad|><|vision_end|>", "<video>\n"
)


def _qwen2_text_config(vocab_size: int, ids: dict[str, int]) -> dict:
    """A tiny Qwen2 language model config (InternVL and LLaVA-OneVision use one)."""
    return {
        "model_type": "qwen2",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }


def build_internvl(folder: Path, seed: int = 0) -> Path:
    from transformers import GotOcr2ImageProcessor, InternVLConfig, InternVLForConditionalGeneration

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
    tokenizer = make_tokenizer(
        special,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    torch.manual_seed(seed)
    config = InternVLConfig(
        text_config=_qwen2_text_config(len(tokenizer), ids),
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": [224, 224],
            "patch_size": [14, 14],
        },
        image_token_id=ids["<IMG_CONTEXT>"],
        image_seq_length=64,
        tie_word_embeddings=False,
    )
    model = InternVLForConditionalGeneration(config).eval()
    # InternVL3-hf checkpoints ship GotOcr2 image processing with tiling on; here at 224 px tiles
    image_processor = GotOcr2ImageProcessor(size={"height": 224, "width": 224}, crop_to_patches=True)
    return _save(folder, model, tokenizer, image_processor, INTERNVL_TEMPLATE, {"image_seq_length": 64})


ONEVISION_TEMPLATE = QWEN2_VL_TEMPLATE.replace("<|vision_start|><|image_pad|><|vision_end|>", "<image>\n").replace(
    "<|vision_start|><|video_pad|><|vision_end|>", "<video>\n"
)


def build_llava_onevision(folder: Path, seed: int = 0) -> Path:
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration, LlavaOnevisionImageProcessor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"]
    tokenizer = make_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    image_processor = LlavaOnevisionImageProcessor()
    torch.manual_seed(seed)
    config = LlavaOnevisionConfig(
        text_config=_qwen2_text_config(len(tokenizer), ids),
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 384,
            "patch_size": 14,
        },
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        image_grid_pinpoints=image_processor.image_grid_pinpoints,
        vision_feature_select_strategy="full",
    )
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    processor_config = {"num_image_tokens": 729, "vision_feature_select_strategy": "full"}
    return _save(folder, model, tokenizer, image_processor, ONEVISION_TEMPLATE, processor_config)


BUILDERS = {
    "llava_onevision": build_llava_onevision,
    "internvl": build_internvl,
    "gemma3": build_gemma3,
    "qwen2_vl": build_qwen2_vl,
    "qwen2_5_vl": lambda folder: build_qwen2_vl(folder, version="2.5"),
    "qwen3_vl": lambda folder: build_qwen2_vl(folder, version="3"),
    "llava": build_llava,
}


def with_answer(inputs, answer: torch.Tensor):
    """Processor outputs for a prompt, with the answer ids [1, A] appended: teacher forcing (the
    attention mask and any token-type ids extended alike)."""
    inputs["input_ids"] = torch.cat([inputs["input_ids"], answer], 1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    for key in ("mm_token_type_ids", "token_type_ids"):
        if key in inputs:
            inputs[key] = torch.cat([inputs[key], torch.zeros_like(answer)], 1)
    return inputs


def write_image(path: Path, height: int, width: int, seed: int = 0) -> str:
    """A random PNG (or JPEG by suffix) of the given size."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), image)
    return str(path)


def write_video(path: Path, frames: int, height: int, width: int, seed: int = 0) -> str:
    """A random MJPG .avi video."""
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 4.0, (width, height))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    writer.release()
    return str(path)


class QwenVideoProcessorDouble:
    """Stands in for Qwen2-VL's torchvision video processor in tests on machines without torchvision.

    Same layout as transformers' Qwen2VLVideoProcessor: frames resized by `smart_resize`, rescaled
    and normalised, then grouped `temporal_patch_size` at a time into patches; returns
    pixel_values_videos [T*H*W, C*tps*p*p] and video_grid_thw [(T, H, W)] in patches.
    """

    def __init__(self, image_processor, patch_size: int = 14, merge_size: int = 2, temporal_patch_size: int = 2):
        self.image_processor = image_processor
        self.patch_size, self.merge_size, self.temporal_patch_size = patch_size, merge_size, temporal_patch_size

    def __call__(self, videos, **kwargs):
        from transformers import BatchFeature
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        p, m, tps = self.patch_size, self.merge_size, self.temporal_patch_size
        mean = np.asarray(self.image_processor.image_mean, np.float32)[:, None, None]
        std = np.asarray(self.image_processor.image_std, np.float32)[:, None, None]
        all_patches, grids = [], []
        for video in videos:
            video = np.asarray(video)
            h, w = smart_resize(video.shape[1], video.shape[2], factor=p * m)
            frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_CUBIC) for f in video])
            frames = (frames.transpose(0, 3, 1, 2).astype(np.float32) / 255.0 - mean) / std
            if len(frames) % tps:
                frames = np.concatenate([frames, np.repeat(frames[-1:], tps - len(frames) % tps, axis=0)])
            gt, gh, gw = len(frames) // tps, h // p, w // p
            x = frames.reshape(gt, tps, 3, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
            all_patches.append(x.reshape(gt * gh * gw, 3 * tps * p * p))
            grids.append([gt, gh, gw])
        data = {"pixel_values_videos": np.concatenate(all_patches), "video_grid_thw": np.asarray(grids, np.int64)}
        if kwargs.get("video_metadata") is not None:
            data["video_metadata"] = kwargs["video_metadata"]
        return BatchFeature(data, tensor_type=kwargs.get("return_tensors"))
