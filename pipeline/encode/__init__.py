"""The encode stage: run a VLM on samples and record what explain needs (imports torch lazily).

from tamx.pipeline.encode import encode, load_model, load_processor, inline_input
model = load_model("Qwen/Qwen2-VL-2B-Instruct")
processor = load_processor("Qwen/Qwen2-VL-2B-Instruct")
encode(model, processor, inline_input(images=("cat.jpg",), prompt="Describe it."), "runs/cat")
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "encode": "stage",
    "encode_path": "stage",
    "EncodeReport": "stage",
    "model_name": "stage",
    "EncodeSettings": "record",
    "load_model": "loading",
    "load_processor": "loading",
    "EncodeInput": "inputs",
    "inline_input": "inputs",
    "read_manifest": "inputs",
    "adapter_for": "adapters",
    "supported_model_types": "adapters",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tamx.pipeline.encode' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
