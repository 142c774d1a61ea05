"""Encode at real size: tamx's encode against plain `generate`, and the authors' all-layer recipe.

The model is built from a published configuration (Qwen2-VL-2B-Instruct; LLaVA-1.5-7B with
`--family llava-1.5-7b`) with random weights, and its processor from the checkpoint's published
processor settings (image processor and processor config, chat template); only the tokenizer is
a stand-in (a byte-level BPE trained here, carrying the family's special tokens), since nothing
can be downloaded. The input is one 448x448 image and a short question; every answer is forced
to its length (the LM-head rows of the end-of-turn tokens and the vision placeholders are zeroed,
so greedy decoding never picks them: plain and tamx generate exactly N tokens).

Printed, against plain `generate` (processor + generate, no capture) measured in the same run:
- time: plain vs `tamx.pipeline.encode.encode` (preprocessing, generate under the final-norm hook
  with top-3 candidates, the sample built and written to a run store), the capture overhead
  (target <= 5%), and samples per second for each `--batch-sizes` (speed-up over batch 1);
- memory, one fresh process per mode and length: the peak over the loaded, warmed-up model
  (CUDA: torch's peak allocated; CPU: peak RSS, VmHWM reset through /proc/self/clear_refs, glibc's
  mmap threshold fixed so freed tensors leave the process) for plain, tamx and the authors'
  recipe (`generate(output_hidden_states=True, return_dict_in_generate=True)`, then the LM head
  over the last layer of every step), beside the bytes tamx stores per sample (on disk).

    python benchmarks/encode_real_size.py --device cuda --dtype bfloat16 --depth full
    python benchmarks/encode_real_size.py --depth 2 --lengths 64 --batch-sizes 1,4   # CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
CORPUS = [
    "system\nYou are a helpful assistant.\nuser\nassistant\nUSER: ASSISTANT:",
    "Describe the image in detail.",
    "What is in this picture? A cat sits on a red mat next to a dog.",
    "The answer is a small house with a green door and two windows.",
]
QUESTION = "Describe the image in detail."

# Qwen/Qwen2-VL-2B-Instruct: config.json (transformers 4.45 names), preprocessor_config.json
QWEN2_VL_2B = {
    "text": {
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 32768,
        "max_window_layers": 28,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
        "sliding_window": 32768,
        "use_sliding_window": False,
        "tie_word_embeddings": True,
        # published ids: bos 151643, eos 151645; here the stand-in tokenizer's ids
    },
    "vision": {
        "depth": 32,
        "embed_dim": 1280,
        "hidden_size": 1536,
        "hidden_act": "quick_gelu",
        "mlp_ratio": 4,
        "num_heads": 16,
        "in_channels": 3,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
    "image_processor": {
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
    },
}

# llava-hf/llava-1.5-7b-hf: config.json (Vicuna-7B text model, CLIP ViT-L/14-336), preprocessor_config.json
LLAVA_15_7B = {
    "text": {
        "model_type": "llama",
        "vocab_size": 32064,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "vision": {
        "model_type": "clip_vision_model",
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
    },
    "model": {"vision_feature_layer": -2, "vision_feature_select_strategy": "default", "projector_hidden_act": "gelu"},
    "image_processor": {
        "size": {"shortest_edge": 336},
        "crop_size": {"height": 336, "width": 336},
        "do_center_crop": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
    },
    "processor": {"patch_size": 14, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 1},
}

QWEN2_VL_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAVA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def stand_in_tokenizer(special: list[str], **roles: str):
    """A byte-level BPE tokenizer trained on a few sentences, with the family's special tokens."""
    from tamx.pipeline.demo.train import byte_level_bpe

    return byte_level_bpe(CORPUS, special, 1000, **roles)


def _layers(depth: str, full: int) -> int:
    return full if depth == "full" else min(int(depth), full)


@dataclass
class Built:
    config: Any
    model_class: Any
    folder: Path  # config, tokenizer, image processor (and processor config) like a checkpoint's
    text_layers: int
    vision_layers: int
    full_text_layers: int


def build_qwen2_vl(folder: Path, size: str, depth: str, vision_depth: str) -> Built:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>"]
    special += ["<|image_pad|>", "<|video_pad|>"]
    tokenizer = stand_in_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    text, vision = dict(QWEN2_VL_2B["text"]), dict(QWEN2_VL_2B["vision"])
    full = text["num_hidden_layers"]
    if size == "tiny":  # the test's plumbing check: tiny widths, the same code path
        text.update(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_attention_heads=4)
        text.update(head_dim=16, rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3]})
        vision.update(depth=1, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    text["num_hidden_layers"] = _layers(depth, text["num_hidden_layers"])
    vision["depth"] = _layers(vision_depth, vision["depth"])
    text.update(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None)
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text["tie_word_embeddings"],
    )
    tokenizer.chat_template = QWEN2_VL_TEMPLATE
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessor(**QWEN2_VL_2B["image_processor"]).save_pretrained(folder)
    config.save_pretrained(folder)
    return Built(config, Qwen2VLForConditionalGeneration, folder, text["num_hidden_layers"], vision["depth"], full)


def build_llava(folder: Path, size: str, depth: str, vision_depth: str) -> Built:
    from transformers import CLIPImageProcessor, LlavaConfig, LlavaForConditionalGeneration

    special = ["<unk>", "<s>", "</s>", "<image>", "<pad>"]
    tokenizer = stand_in_tokenizer(special, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    text, vision = dict(LLAVA_15_7B["text"]), dict(LLAVA_15_7B["vision"])
    full = text["num_hidden_layers"]
    if size == "tiny":
        text.update(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128)
        text.update(num_attention_heads=4, num_key_value_heads=4)
        vision.update(hidden_size=32, intermediate_size=64, num_attention_heads=2, projection_dim=32)
    text["num_hidden_layers"] = _layers(depth, text["num_hidden_layers"])
    # vision_feature_layer -2 reads the second-to-last hidden state: keep at least 2 blocks
    vision["num_hidden_layers"] = max(2, _layers(vision_depth, vision["num_hidden_layers"]))
    text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text["pad_token_id"] = tokenizer.pad_token_id
    config = LlavaConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
        **LLAVA_15_7B["model"],
    )
    tokenizer.chat_template = LLAVA_TEMPLATE
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(**LLAVA_15_7B["image_processor"]).save_pretrained(folder)
    (folder / "processor_config.json").write_text(json.dumps(LLAVA_15_7B["processor"]))
    config.save_pretrained(folder)
    return Built(
        config, LlavaForConditionalGeneration, folder, text["num_hidden_layers"], vision["num_hidden_layers"], full
    )


FAMILIES = {
    "qwen2-vl-2b": ("Qwen2-VL-2B-Instruct", build_qwen2_vl),
    "llava-1.5-7b": ("LLaVA-1.5-7B", build_llava),
}


# ---------------------------------------------------------------- one measuring process
class Bench:
    """A model, its processor and inputs, with the three ways of running them."""

    def __init__(self, args, work: Path):
        import numpy as np
        import torch
        from PIL import Image

        sys.path.insert(0, str(ROOT))
        from tamx.pipeline.encode import adapter_for, load_processor

        self.args, self.work = args, work
        torch.manual_seed(0)
        torch.set_num_threads(args.threads)
        self.device = torch.device(args.device)
        self.dtype = getattr(torch, args.dtype)
        built = FAMILIES[args.family][1](work / "checkpoint", args.size, args.depth, args.vision_depth)
        self.built = built
        with torch.device(self.device):
            model = built.model_class._from_config(built.config, dtype=self.dtype)
        self.model = model.eval()
        self.processor = load_processor(str(built.folder))
        self.adapter = adapter_for(self.model, self.processor)
        # force every answer's length: greedy never picks an end-of-turn token or a vision placeholder
        never = set(self._eos_ids()) | {getattr(built.config, n, None) for n in ("image_token_id", "video_token_id")}
        never.discard(None)
        with torch.no_grad():
            self.model.get_output_embeddings().weight[sorted(never)] = 0
        rng = np.random.default_rng(0)
        self.images = []
        for i in range(max(args.batch_sizes)):
            path = work / f"image{i}.png"
            pixels = rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(path)
            self.images.append(path)

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = [ids] if isinstance(ids, int) else list(ids or [])
        tokenizer = self.processor.tokenizer
        return sorted({*ids, *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def messages(self, image: Path) -> list[dict]:
        return [
            {"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": QUESTION}]}
        ]

    def greedy(self, length: int):
        from transformers import GenerationConfig

        tokenizer = self.processor.tokenizer
        # the same plain greedy settings tamx's encode passes
        return GenerationConfig(
            max_new_tokens=length,
            do_sample=False,
            num_beams=1,
            eos_token_id=self._eos_ids(),
            pad_token_id=tokenizer.pad_token_id,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_length=0,
            suppress_tokens=[],
            begin_suppress_tokens=[],
        )

    def plain_inputs(self, batch: int):
        from PIL import Image

        prompts = [
            self.processor.apply_chat_template(self.messages(p), add_generation_prompt=True, tokenize=False)
            for p in self.images[:batch]
        ]
        images = [[Image.open(p).convert("RGB")] for p in self.images[:batch]]
        extra = {"padding": True, "padding_side": "left"} if batch > 1 else {}
        inputs = self.processor(text=prompts, images=images, return_tensors="pt", **extra)
        moved = {}
        for key, value in inputs.items():
            value = value.to(self.device)
            moved[key] = value.to(self.dtype) if value.is_floating_point() else value
        return moved

    def plain(self, batch: int, length: int) -> int:
        """processor + generate, no capture; returns the new tokens per row."""
        import torch

        inputs = self.plain_inputs(batch)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self.greedy(length))
        return out.shape[1] - inputs["input_ids"].shape[1]

    def tamx(self, batch: int, length: int) -> Path:
        """tamx's encode of `batch` samples into a fresh run; returns the run's folder."""
        from tamx.pipeline.encode import EncodeInput, EncodeSettings, encode

        out = self.work / f"run-{batch}-{length}"
        inputs = [EncodeInput(id=f"s{i}", messages=self.messages(p)) for i, p in enumerate(self.images[:batch])]
        report = encode(
            self.model,
            self.processor,
            inputs,
            out,
            model_id=FAMILIES[self.args.family][0],
            settings=EncodeSettings(max_new_tokens=length, top_k=3),
            overwrite=True,
            batch_size=batch,
        )
        if report.failed:
            sys.exit(f"tamx encode failed: {report.failed}")
        return out

    def authors(self, length: int) -> int:
        """The authors' recipe: every step's and layer's hidden states, then the LM head over each step."""
        import torch

        inputs = self.plain_inputs(1)
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                generation_config=self.greedy(length),
                output_hidden_states=True,
                return_dict_in_generate=True,
            )
            logits = [self.model.get_output_embeddings()(step[-1]) for step in out.hidden_states]
            self.sync()
            del logits
        return out.sequences.shape[1] - inputs["input_ids"].shape[1]


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _refuse_silent_fallback() -> None:
    """A batch that tamx re-runs one sample at a time would time the wrong thing: stop instead."""

    class Stop(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "batched generate failed" in record.getMessage():
                sys.exit(f"tamx's batched generate failed and fell back: {record.getMessage()}")

    logging.getLogger().addHandler(Stop())
    logging.getLogger().setLevel(logging.INFO)


def stored_bytes(run: Path, sample_id: str = "s0") -> int:
    return sum(f.stat().st_size for f in (run / "samples" / sample_id).rglob("*") if f.is_file())


def measure_memory(bench: Bench, mode: str, length: int) -> dict:
    """Peak memory of one run of `mode` over the loaded model, after a warm-up run of the same mode."""
    import torch

    def once():
        if mode == "plain":
            return {"new_tokens": bench.plain(1, length)}
        if mode == "authors":
            return {"new_tokens": bench.authors(length)}
        run = bench.tamx(1, length)
        sample = __import__("tamx").open_run(str(run)).sample("s0")
        return {"new_tokens": len(sample.answer_positions), "stored_bytes": stored_bytes(run)}

    once()
    gc.collect()
    bench.sync()
    if bench.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM, the peak RSS
        base = _proc_kib("VmRSS") * 1024
    result = once()
    bench.sync()
    peak = torch.cuda.max_memory_allocated() if bench.device.type == "cuda" else _proc_kib("VmHWM") * 1024
    return {**result, "extra_bytes": max(0, peak - base), "base_bytes": base}


def measure_times(bench: Bench) -> list[dict]:
    """Median seconds per batch of plain and tamx, the two taking turns."""
    args, rows = bench.args, []
    for batch in args.batch_sizes:
        bench.plain(batch, 2), bench.tamx(batch, 2)  # warm-up at this batch shape
        for length in args.lengths:
            times: dict[str, list[float]] = {"plain": [], "tamx": []}
            for repeat in range(args.repeats):
                order = ("plain", "tamx") if repeat % 2 == 0 else ("tamx", "plain")
                for mode in order:
                    bench.sync()
                    start = time.perf_counter()
                    if mode == "plain":
                        new = bench.plain(batch, length)
                    else:
                        run = bench.tamx(batch, length)
                    bench.sync()
                    times[mode].append(time.perf_counter() - start)
                if new != length:
                    sys.exit(f"plain generate made {new} tokens, not {length}")
                answer = __import__("tamx").open_run(str(run)).sample("s0").answer_positions
                if len(answer) != length:
                    sys.exit(f"tamx stored {len(answer)} answer tokens, not {length}")
            rows.append({"batch": batch, "length": length, **{m: statistics.median(t) for m, t in times.items()}})
    return rows


def worker(args) -> dict:
    _refuse_silent_fallback()
    with tempfile.TemporaryDirectory(prefix="tamx-encode-real-") as tmp:
        bench = Bench(args, Path(tmp))
        built = bench.built
        info = {
            "text_layers": built.text_layers,
            "vision_layers": built.vision_layers,
            "full_text_layers": built.full_text_layers,
            "hidden_size": built.config.text_config.hidden_size,
            "vocab_size": built.config.text_config.vocab_size,
            "prompt_tokens": int(bench.plain_inputs(1)["input_ids"].shape[1]),
            "device_name": device_name(bench.device),
        }
        if args.task == "times":
            return {**info, "rows": measure_times(bench)}
        mode, length = args.task.split(":")
        return {**info, **measure_memory(bench, mode, int(length))}


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    return f"CPU {model} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


# ---------------------------------------------------------------- the parent: one process per measurement
def child(task: str) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}  # freed tensors go back to the OS
    argv = [a for a in sys.argv[1:]]
    out = subprocess.run([sys.executable, __file__, *argv, "--task", task], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"the measurement {task!r} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def report(args) -> None:
    name = FAMILIES[args.family][0]
    started = time.perf_counter()
    times = child("times")
    memory = {(m, n): child(f"{m}:{n}") for n in args.lengths for m in ("plain", "tamx", "authors")}
    info = times
    depth = "full depth" if info["text_layers"] == info["full_text_layers"] else "DEPTH-REDUCED"
    print(
        f"{name} published configuration{' (tiny widths: plumbing check)' if args.size == 'tiny' else ''}, "
        f"random weights, {depth}: {info['text_layers']}/{info['full_text_layers']} text layers, "
        f"{info['vision_layers']} vision blocks"
    )
    print(
        f"{args.device} {args.dtype} on {info['device_name']}; one 448x448 image + question = "
        f"{info['prompt_tokens']} prompt tokens; answers forced to {', '.join(map(str, args.lengths))} tokens"
    )
    print()
    print("time (median of repeats; plain = processor + generate; tamx = encode() into a run store)")
    print(
        f"{'answer':>6} {'batch':>5} {'plain s':>9} {'tamx s':>9} {'overhead':>9} "
        f"{'plain smp/s':>11} {'tamx smp/s':>10} {'tamx speed-up':>13}"
    )
    single = {r["length"]: r for r in info["rows"] if r["batch"] == 1}
    for r in info["rows"]:
        overhead = r["tamx"] / r["plain"] - 1
        speedup = ""
        if r["length"] in single:
            speedup = f"{(r['batch'] / r['tamx']) / (1 / single[r['length']]['tamx']):.2f}x"
        print(
            f"{r['length']:>6} {r['batch']:>5} {r['plain']:>9.3f} {r['tamx']:>9.3f} {overhead:>+8.1%} "
            f"{r['batch'] / r['plain']:>11.3f} {r['batch'] / r['tamx']:>10.3f} {speedup:>13}"
        )
    print()
    unit = "peak allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"memory, batch 1, MB over the loaded model ({unit}; one process per cell)")
    print(
        f"{'answer':>6} {'plain':>8} {'tamx':>8} {'tamx-plain':>10} {'stored/smp':>10} {'(tamx-plain)/stored':>19} "
        f"{'authors':>9} {'authors-plain':>13} {'authors, full depth*':>20}"
    )
    for n in args.lengths:
        plain, tamx, authors = (memory[(m, n)] for m in ("plain", "tamx", "authors"))
        for m, r in (("plain", plain), ("tamx", tamx), ("authors", authors)):
            if r["new_tokens"] != n:
                sys.exit(f"{m} made {r['new_tokens']} answer tokens, not {n}")
        stored = tamx["stored_bytes"]
        extra = tamx["extra_bytes"] - plain["extra_bytes"]
        # what the authors' outputs hold at the full depth, from shapes: every layer's states at every
        # position, and full-vocabulary logits for every position (prompt + answer - 1)
        positions = info["prompt_tokens"] + n - 1
        element = 2 if args.dtype in ("bfloat16", "float16") else 4
        full = positions * element * ((info["full_text_layers"] + 1) * info["hidden_size"] + info["vocab_size"])
        print(
            f"{n:>6} {mb(plain['extra_bytes']):>8} {mb(tamx['extra_bytes']):>8} {mb(extra):>10} {mb(stored):>10} "
            f"{extra / stored:>19.2f} {mb(authors['extra_bytes']):>9} "
            f"{mb(authors['extra_bytes'] - plain['extra_bytes']):>13} {mb(full):>20}"
        )
    print("* the authors' outputs alone at the full published depth, computed from shapes (not measured)")
    worst = max(r["tamx"] / r["plain"] - 1 for r in info["rows"] if r["batch"] == 1)
    print(f"target: capture overhead <= 5% at batch 1: worst {worst:+.1%} ({'met' if worst <= 0.05 else 'MISSED'})")
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores; whole run {time.perf_counter() - started:.0f} s")
    if args.json:
        cells = [{"mode": m, "length": n, **r} for (m, n), r in memory.items()]
        Path(args.json).write_text(json.dumps({"times": times, "memory": cells}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="qwen2-vl-2b", choices=sorted(FAMILIES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="default: bfloat16 on cuda, float32 on cpu",
    )
    parser.add_argument("--depth", default="full", help="text layers: 'full' (the published depth) or a number")
    parser.add_argument("--vision-depth", default=None, help="vision blocks: 'full' or a number (default: --depth)")
    parser.add_argument("--lengths", default="64,128,256", help="forced answer lengths, comma-separated")
    parser.add_argument("--batch-sizes", default="1,4,16", help="--batch-size values to time, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument(
        "--size",
        default="published",
        choices=["published", "tiny"],
        help="tiny: tiny widths, for the test of this script only",
    )
    parser.add_argument("--json", help="also write the measurements to this JSON file")
    parser.add_argument("--task", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    args.vision_depth = args.vision_depth or args.depth
    args.lengths = [int(n) for n in args.lengths.split(",")]
    args.batch_sizes = [int(n) for n in args.batch_sizes.split(",")]
    if 1 not in args.batch_sizes:
        args.batch_sizes.insert(0, 1)  # the baseline of the speed-up and of the overhead
    if args.task:
        print(json.dumps(worker(args)))
        return
    report(args)


if __name__ == "__main__":
    main()
