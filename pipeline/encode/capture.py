"""Capture the last layer's hidden states with a forward hook on the language model's final norm.

The hook copies the norm's output (the input of the LM head) into one preallocated buffer,
in prefill and at every decode step, so generate is never asked for every layer's hidden
states and no full-vocabulary logits are kept for every position.
"""

from __future__ import annotations

import torch
from torch import nn


class FinalNormCapture:
    """Context manager recording the output of `norm` for the first `rows` batch rows: `states` [rows, n, C].

    capacity: the number of positions to expect (prompt + new tokens); the buffer grows if
    a call brings more, which only costs a copy.
    """

    def __init__(self, norm: nn.Module, capacity: int, rows: int = 1) -> None:
        self.norm = norm
        self.capacity = max(1, capacity)
        self.rows = rows
        self._buffer: torch.Tensor | None = None
        self._filled = 0
        self._handle = None

    def _hook(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        states = output[0] if isinstance(output, tuple) else output
        if states.ndim != 3:
            raise RuntimeError(f"the final norm returned shape {tuple(states.shape)}, expected [batch, seq, hidden]")
        rows = states.detach()[: self.rows]
        end = self._filled + rows.shape[1]
        if self._buffer is None:
            shape = (self.rows, max(self.capacity, end), rows.shape[2])
            self._buffer = torch.empty(shape, dtype=rows.dtype, device=rows.device)
        elif end > self._buffer.shape[1]:
            grown = torch.empty((self.rows, end, rows.shape[2]), dtype=rows.dtype, device=rows.device)
            grown[:, : self._filled] = self._buffer[:, : self._filled]
            self._buffer = grown
        self._buffer[:, self._filled : end] = rows
        self._filled = end

    def __enter__(self) -> FinalNormCapture:
        self._buffer, self._filled = None, 0
        self._handle = self.norm.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @property
    def states(self) -> torch.Tensor:
        """The recorded states [rows, n, C] in the model's dtype (a view of the buffer)."""
        if self._buffer is None:
            raise RuntimeError("the final-norm hook never ran: the adapter points at the wrong module")
        return self._buffer[:, : self._filled]


class TopKRecorder:
    """A logits processor that keeps only the top-k log-probs of each decode step.

    generate hands it the step's logits [B, V] (raw logits under a plain greedy config); it
    records `k` ids and log-softmax values per batch row ([B, k] per step) and returns the
    scores unchanged, so no per-step full-vocabulary logits are kept.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.ids: list[torch.Tensor] = []
        self.logprobs: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.k > 0:
            top = torch.topk(torch.log_softmax(scores.float(), dim=-1), k=min(self.k, scores.shape[-1]), dim=-1)
            self.ids.append(top.indices)
            self.logprobs.append(top.values)
        return scores
