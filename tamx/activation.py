"""Eq. 1: class activation maps of an LLM head, and the logits they come from."""

from __future__ import annotations

import numpy as np


def class_logits(hidden: np.ndarray, rows: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Logits of the given classes at the given positions.

    hidden: [P, C] float32; rows: [U, C] float32 LM-head rows; bias: [U] or None.
    Returns [P, U] float32.
    """
    logits = hidden @ rows.T
    if bias is not None:
        logits += bias
    return logits


def activation_maps(vision_hidden: np.ndarray, rows: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Eq. 1, A_t[v] = relu(h[v] . w[t]) for every vision cell v and class t: [V, U] float32.

    For an LLM head this is also Grad-CAM: the gradient of a logit w.r.t. h is w.
    """
    return np.maximum(class_logits(vision_hidden, rows, bias), 0.0)
