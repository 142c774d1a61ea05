"""The effect of each difference between `tamx eval --protocol tamx` and `--protocol paper`.

Scores one run with the tamx protocol, with tamx plus each single departure of the paper
protocol (docs/eval.md "Protocols"), and with the paper protocol, and prints per variant the
change of Obj-IoU, Func-IoU, F1-IoU, precision and recall against tamx in points (%), and how
many entries changed. Without --run it builds the planted benchmark (benchmarks/planted.py);
with --run and --data it scores an existing run (a folder dataset), e.g. the shapes run that
`python benchmarks/shapes_eval.py --out D` leaves in D/run and D/data.

    python benchmarks/eval_protocol.py --out /tmp/protocol --samples 24
    python benchmarks/eval_protocol.py --run D/run --data D/data
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tamx.pipeline.eval import evaluate_run

from benchmarks.planted import build
from tamx.metrics import PROTOCOLS, Protocol

KEYS = ("obj_iou", "func_iou", "f1_iou", "precision", "recall")


class Recomputed(Protocol):
    """A protocol whose normaliser is always recomputed from the hidden states, never read from
    the stored relevance: the baseline of the single departures, so that they are not mixed
    with the float rounding between the two (shown in its own row)."""

    def stored_normaliser(self) -> bool:
        return False


def departures() -> list[tuple[str, Protocol, str]]:
    """(label, protocol, the label it is compared with): tamx, tamx with its normaliser
    recomputed, tamx plus each single departure of paper, and paper."""
    tamx, paper = PROTOCOLS["tamx"], PROTOCOLS["paper"]
    recomputed = Recomputed(**{f.name: getattr(tamx, f.name) for f in fields(tamx)})
    rows = [("tamx", tamx, ""), ("tamx, recomputed", recomputed, "tamx")]
    for f in fields(tamx):
        if f.name != "name" and getattr(paper, f.name) != getattr(tamx, f.name):
            value = getattr(paper, f.name)
            rows.append((f"+ {f.name}={value}", replace(recomputed, **{f.name: value}), "tamx, recomputed"))
    return [*rows, ("paper", paper, "tamx")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="empty folder for the planted run and data")
    parser.add_argument("--samples", type=int, default=24)
    parser.add_argument("--run", type=Path, help="an explained run to score instead of the planted one")
    parser.add_argument("--data", type=Path, help="its folder dataset")
    parser.add_argument("--threshold", type=float, default=None, help="a fixed threshold in (0, 1) instead of Otsu")
    args = parser.parse_args()
    if args.run is None:
        if args.out is None:
            parser.error("give --out (planted) or --run and --data")
        run, data = build(args.out, args.samples, leak=0.8, noise=0.12, variants=["cam", "eci", "tam"])
    else:
        run, data = args.run, args.data
    rows = departures()
    results = {label: evaluate_run(run, "folder", data, protocol=p, threshold=args.threshold) for label, p, _ in rows}
    base = results["tamx"]
    print(
        f"{run}: threshold {args.threshold or 'Otsu'}; tamx in %, the others as the change in points against the "
        "row named last"
    )
    header = f"{'variant':<14} {'protocol':<27}" + "".join(f"{k:>10}" for k in KEYS) + f"{'entries':>9}  against"
    print(header + "\n" + "-" * len(header))
    for variant in base.variants():
        for label, _, against in rows:
            result, other = results[label], results[against or "tamx"]
            s, t = result.summaries[variant], other.summaries[variant]
            if label == "tamx":
                values = "".join(f"{100 * getattr(s, k):>10.2f}" for k in KEYS)
                changed = ""
            else:
                values = "".join(f"{100 * (getattr(s, k) - getattr(t, k)):>+10.3f}" for k in KEYS)
                mine = [(o.sample, o.words, o.iou) for o in result.objects[variant]] + [
                    (f.sample, f.word, f.score) for f in result.functions[variant]
                ]
                theirs = [(o.sample, o.words, o.iou) for o in other.objects[variant]] + [
                    (f.sample, f.word, f.score) for f in other.functions[variant]
                ]
                same = len(mine) == len(theirs)
                changed = str(sum(a != b for a, b in zip(mine, theirs))) if same else f"{len(mine)}/{len(theirs)}"
            print(f"{variant:<14} {label:<27}{values}{changed:>9}  {against}")


if __name__ == "__main__":
    main()
