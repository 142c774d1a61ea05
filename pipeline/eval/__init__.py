"""The eval stage: score a run's maps against dataset masks (Obj-IoU, Func-IoU, F1-IoU)."""

from .stage import EvalResult, evaluate_run, write_results

__all__ = ["EvalResult", "evaluate_run", "write_results"]
