"""Encode benchmark: plain generate vs tamx capture vs the authors' all-layer hidden states.

A Qwen2-VL with the real 2B widths (text 1536 wide, vocab 151936, vision 1280 wide) but few
layers and random weights. Each mode runs in its own process (peak memory is per process):
- plain:   generate, no capture;
- tamx:    generate under the final-norm hook, top-3 candidates recorded per step;
- authors: generate(output_hidden_states=True, return_dict_in_generate=True), then the LM
           head over every position's last-layer state (the TAM authors' recipe).
Prints wall time and peak extra memory (CPU: peak RSS over the loaded model; CUDA: peak
allocated) per mode, and the ratios the issue targets. Run:
    python benchmarks/encode_bench.py [--device cuda] [--layers 2] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_model(layers: int, vision_depth: int, dtype, device):
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 151936,
            "hidden_size": 1536,
            "intermediate_size": 8960,
            "num_hidden_layers": layers,
            "num_attention_heads": 12,
            "num_key_value_heads": 2,
            "rope_parameters": {"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
            "eos_token_id": 151645,
            "pad_token_id": 151643,
            "tie_word_embeddings": True,
        },
        vision_config={"depth": vision_depth, "embed_dim": 1280, "hidden_size": 1536, "num_heads": 16},
        tie_word_embeddings=True,
    )
    return Qwen2VLForConditionalGeneration(config).to(device=device, dtype=dtype).eval(), config


def inputs_for(config, device, dtype, prompt_tokens: int, grid: tuple[int, int, int]):
    """Inputs like the processor's for one image of `grid` patches (T, H, W) and a text prompt."""
    import torch

    t, h, w = grid
    merged = t * h * w // 4
    generator = torch.Generator().manual_seed(1)
    text = torch.randint(1000, 100000, (prompt_tokens,), generator=generator)
    ids = torch.cat(
        [
            text[:8],
            torch.tensor([config.vision_start_token_id]),
            torch.full((merged,), config.image_token_id),
            torch.tensor([config.vision_end_token_id]),
            text[8:],
        ]
    )[None]
    mm = (ids == config.image_token_id).long()
    patch_dim = 3 * 2 * 14 * 14
    pixels = torch.randn(t * h * w, patch_dim, generator=generator)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones_like(ids).to(device),
        "mm_token_type_ids": mm.to(device),
        "pixel_values": pixels.to(device=device, dtype=dtype),
        "image_grid_thw": torch.tensor([grid]).to(device),
    }


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def setup(args):
    import torch

    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    torch.set_num_threads(args.threads)
    model, config = build_model(args.layers, args.vision_depth, dtype, device)
    inputs = inputs_for(config, device, dtype, args.prompt_tokens, (1, args.grid, args.grid))
    return device, model, config, inputs


def run_mode(mode: str, args, prepared=None) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from tamx.pipeline.encode.capture import FinalNormCapture, TopKRecorder
    from transformers import LogitsProcessorList

    device, model, config, inputs = prepared or setup(args)
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    gen.update({"eos_token_id": config.text_config.eos_token_id, "pad_token_id": config.text_config.pad_token_id})
    norm = model.model.language_model.norm
    prompt_length = inputs["input_ids"].shape[1]

    def once() -> int:
        with torch.inference_mode():
            if mode == "plain":
                model.generate(**inputs, **gen)
                return 0
            if mode == "tamx":
                recorder = TopKRecorder(3)
                with FinalNormCapture(norm, prompt_length + args.new_tokens) as capture:
                    model.generate(**inputs, **gen, logits_processor=LogitsProcessorList([recorder]))
                states = capture.states[0, : prompt_length + args.new_tokens - 1]
                return states.numel() * states.element_size()
            out = model.generate(**inputs, **gen, output_hidden_states=True, return_dict_in_generate=True)
            states = torch.cat([step[-1][0] for step in out.hidden_states])
            logits = model.lm_head(states)
            del logits
            return states.numel() * states.element_size()

    if args.timing:
        return once

    once()  # warm-up: allocator pools, kernels
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS (VmHWM)
        base = _rss_kib("VmRSS") * 1024
    times = []
    stored = 0
    for _ in range(args.repeats):
        start = time.perf_counter()
        stored = once()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _rss_kib("VmHWM") * 1024
    return {"mode": mode, "seconds": min(times), "extra_bytes": max(0, peak - base), "hidden_bytes": stored}


MODES = ("plain", "tamx", "authors")


def _child(arguments: list[str]) -> dict:
    # a fixed mmap threshold: every large tensor is its own mapping, so peak RSS follows tensor peaks
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(f"{arguments} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved_times(args) -> dict:
    """Best wall time per mode, the modes taking turns so that machine noise hits them alike."""
    import torch

    prepared = setup(args)
    runners = {mode: run_mode(mode, args, prepared) for mode in MODES}
    for runner in runners.values():
        runner()  # warm-up
    best = dict.fromkeys(MODES, float("inf"))
    for _ in range(args.repeats):
        for mode, runner in runners.items():
            start = time.perf_counter()
            runner()
            if prepared[0].type == "cuda":
                torch.cuda.synchronize()
            best[mode] = min(best[mode], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--layers", type=int, default=2, help="text decoder layers (the 2B model has 28)")
    parser.add_argument("--vision-depth", type=int, default=2, help="vision blocks (the 2B model has 32)")
    parser.add_argument("--full", action="store_true", help="the full 2B depth: 28 text layers, 32 vision blocks")
    parser.add_argument("--grid", type=int, default=32, help="image patches per side (32: 448 px, 256 tokens)")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--timing", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.full:
        args.layers, args.vision_depth = 28, 32
    if args.timing:
        print(json.dumps(interleaved_times(args)))
        return
    if args.mode:
        print(json.dumps(run_mode(args.mode, args)))
        return
    forwarded = list(sys.argv[1:])
    results = {}
    for mode in MODES:  # peak memory: one process per mode
        results[mode] = _child([*forwarded, "--mode", mode])
    times = _child([*forwarded, "--timing"])  # wall time: modes interleaved in one process, best of repeats
    for mode in MODES:
        results[mode]["seconds"] = times[mode]
    plain = results["plain"]
    print(
        f"Qwen2-VL 2B widths, {args.layers} text layers, vision depth {args.vision_depth}, {args.device} {args.dtype}"
    )
    print(f"prompt {args.prompt_tokens} text + {args.grid * args.grid // 4} image tokens, {args.new_tokens} new tokens")
    print(f"{'mode':<8} {'time s':>8} {'x plain':>8} {'extra MB':>9} {'hidden MB':>10} {'extra/hidden':>13}")
    for mode, r in results.items():
        hidden = r["hidden_bytes"] or results["tamx"]["hidden_bytes"]
        print(
            f"{mode:<8} {r['seconds']:>8.3f} {r['seconds'] / plain['seconds']:>8.3f} "
            f"{r['extra_bytes'] / 1e6:>9.1f} {hidden / 1e6:>10.2f} "
            f"{(r['extra_bytes'] - plain['extra_bytes']) / hidden:>13.2f}"
        )
    print("targets: tamx time <= 1.05 x plain; tamx extra memory over plain <= 1.1 x hidden it stores")
    print(
        f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (timings are noisy above 1)"
    )


if __name__ == "__main__":
    main()
