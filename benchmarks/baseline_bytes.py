"""Bytes per sample that each encode addition stores (docs/encode.md, "Baselines"), for a
Qwen2-VL-2B-sized configuration: hidden 1536, 28 decoder layers, a 448x448 image (256 vision
tokens after the 2x2 merge), ~20 prompt tokens, answers of 64 and 128 tokens, bf16 states.

The shapes come from the code encode stores them with: the logit-lens positions are
`tamx.explain.read_positions` of a sample laid out like that (what `record_layers` stores),
attention and rollout are [layers, N, V] / [N, V] float32 (and [.., M, V] for the prompt
tokens), Grad-CAM [N, V] and [M, V] float32. Raw array bytes, before the store's compression.

    python benchmarks/baseline_bytes.py [--hidden 1536] [--layers 28] [--vision 256] [--prompt 20]
"""

from __future__ import annotations

import argparse

from tamx.explain import read_positions
from tamx.synthetic import synthetic_sample

F32, BF16, I64 = 4, 2, 8


def additions(hidden: int, layers: int, vision: int, prompt: int, answer: int) -> dict[str, int]:
    """Raw bytes of `--layers -8,-16`, `--attention all` and `--gradients -4` for one sample, and of
    the last layer's hidden states every sample stores."""
    side = round(vision**0.5)
    sample = synthetic_sample("q", grids=[(1, side, side)], n_answer=answer, n_context=prompt, hidden_size=8)
    n, m, v = len(sample.answer_positions), len(sample.context_positions), sample.vision_size
    positions = read_positions(sample)  # what record_layers stores the lens states at
    lens_layers = 2  # -8, -16
    return {
        "hidden, last layer": len(sample.hidden) * hidden * BF16,
        "--layers -8,-16": lens_layers * len(positions) * hidden * BF16 + len(positions) * I64,
        "--attention all": layers * (n + m) * v * F32 + (n + m) * v * F32,  # attention + rollout
        "--gradients -4": (n + m) * v * F32,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=28)
    parser.add_argument("--vision", type=int, default=256)
    parser.add_argument("--prompt", type=int, default=20)
    args = parser.parse_args(argv)
    rows = {a: additions(args.hidden, args.layers, args.vision, args.prompt, a) for a in (64, 128)}
    print(f"{'field':<24} {'64-token answer':>16} {'128-token answer':>17}")
    for name in rows[64]:
        print(f"{name:<24} {rows[64][name] / 1e3:>13.1f} kB {rows[128][name] / 1e3:>14.1f} kB")


if __name__ == "__main__":
    main()
