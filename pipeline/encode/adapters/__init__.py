"""The adapter registry: one adapter per model family, looked up by the config's model_type.

To add a family: subclass `Adapter` in a module of this package (set `family`, `model_types`,
implement `block_specs`, override `final_norm` / `special_tokens` where the model differs),
then add the class to `ADAPTERS` below and a tiny model to `tests/tiny_models.py` (`BUILDERS`): the
family tests (tests/test_encode_core.py, tests/test_encode_geometry.py) run over every model_type here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Adapter, AdapterError
from .gemma3 import Gemma3Adapter
from .internvl import InternVLAdapter
from .llava import LlavaAdapter
from .llava_onevision import LlavaOnevisionAdapter
from .qwen2_vl import Qwen2VLAdapter
from .qwen3_vl import Qwen3VLAdapter

if TYPE_CHECKING:
    from torch import nn

ADAPTERS: tuple[type[Adapter], ...] = (
    Qwen2VLAdapter,
    Qwen3VLAdapter,
    LlavaAdapter,
    Gemma3Adapter,
    InternVLAdapter,
    LlavaOnevisionAdapter,
)


def _registry() -> dict[str, type[Adapter]]:
    return {model_type: cls for cls in ADAPTERS for model_type in cls.model_types}


def supported_model_types() -> list[str]:
    """Every config model_type that has an adapter."""
    return sorted(_registry())


def adapter_class(model_type: str) -> type[Adapter]:
    """The adapter class for a config model_type, or an AdapterError saying how to add one."""
    cls = _registry().get(model_type)
    if cls is None:
        raise AdapterError(
            f"no tamx adapter for model_type {model_type!r} (supported: {', '.join(supported_model_types())}). "
            "Add one: subclass tamx.pipeline.encode.adapters.base.Adapter (special tokens, final norm, vision block "
            "grids), register it in ADAPTERS in pipeline/encode/adapters/__init__.py, and add a tiny-model test."
        )
    return cls


def adapter_for(model: nn.Module, processor: Any) -> Adapter:
    """The adapter instance for a loaded model and its processor."""
    return adapter_class(model.config.model_type)(model, processor)


__all__ = ["ADAPTERS", "Adapter", "AdapterError", "adapter_class", "adapter_for", "supported_model_types"]
