"""tamx: Token Activation Maps for vision-language models, torch-free core.

Open a run store with `open_run`, explain a sample with `explain_sample`; the stages and
the `tamx` command line live in `tamx.pipeline` (the repository's pipeline/ folder). Names load on first use, so that
`import tamx` (and the command line's start-up) does not pay for numba or numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    "SampleError": "errors",
    "StoreError": "errors",
    "TamxError": "errors",
    "ExplainSettings": "explain",
    "explain_sample": "explain",
    "filter_grid": "filters",
    "filter_maps": "filters",
    "SCHEMA_VERSION": "records",
    "LMHead": "records",
    "Maps": "records",
    "Media": "records",
    "RunInfo": "records",
    "Sample": "records",
    "VisionBlock": "records",
    "Run": "store",
    "create_run": "store",
    "open_run": "store",
    "show": "report",  # the interactive page of a sample, inline in Jupyter
}

__all__ = sorted([*_WHERE, "__version__"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tamx' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
