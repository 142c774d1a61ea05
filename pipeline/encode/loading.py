"""Load a model and its processor from a Hugging Face id or a local folder."""

from __future__ import annotations

import logging
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

from tamx.errors import TamxError

from ..demo import resolve_model
from .adapters import adapter_class

log = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' picks cuda (this rank's LOCAL_RANK under torchrun), then mps, then cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        import os

        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on a GPU that has it (else fp16) and fp32 on the CPU."""
    if dtype != "auto":
        if dtype not in DTYPES:
            raise TamxError(f"unknown dtype {dtype!r}; use auto, {', '.join(DTYPES)}")
        return DTYPES[dtype]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _config(id_or_path: str) -> Any:
    id_or_path = resolve_model(id_or_path)
    try:
        return AutoConfig.from_pretrained(id_or_path)
    except (OSError, ValueError) as exc:
        raise TamxError(
            f"cannot load model {id_or_path!r}: {exc}. Give a Hugging Face model id or a local folder "
            "holding config.json and the weights"
        ) from None


def load_model(id_or_path: str, device: str = "auto", dtype: str = "auto") -> torch.nn.Module:
    """Load a supported VLM for image-text-to-text in eval mode on `device` (`tamx-demo`: the bundled toy)."""
    id_or_path = resolve_model(id_or_path)
    config = _config(id_or_path)
    adapter_class(config.model_type)
    target = resolve_device(device)
    try:
        model = AutoModelForImageTextToText.from_pretrained(id_or_path, dtype=resolve_dtype(dtype, target))
    except (OSError, ValueError) as exc:
        raise TamxError(f"cannot load the weights of {id_or_path!r}: {exc}") from None
    return model.to(target).eval()


def image_only_processor(id_or_path: str, model_type: str) -> Any:
    """The family's processor class assembled without its video processor (no torchvision needed).

    Its image processor is the PIL backend transformers falls back to, and its tokenizer and
    chat template are the checkpoint's own; the processor's own __call__ expands the placeholders.
    """
    class_name = PROCESSOR_MAPPING_NAMES.get(model_type)
    if not class_name:
        raise TamxError(f"transformers has no processor class for model_type {model_type!r}")
    base = getattr(transformers, class_name)

    class ImageOnly(base):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [name for name in base.get_attributes() if name != "video_processor"]

    ImageOnly.__name__ = ImageOnly.__qualname__ = f"{class_name}ImageOnly"
    tokenizer = AutoTokenizer.from_pretrained(id_or_path)
    image_processor = AutoImageProcessor.from_pretrained(id_or_path)
    kwargs: dict[str, Any] = {"image_processor": image_processor, "tokenizer": tokenizer}
    if "video_processor" in base.get_attributes():
        kwargs["video_processor"] = None
    processor_config = _processor_config(id_or_path)
    for key, value in processor_config.items():
        if key not in ("processor_class", "image_processor", "video_processor", "chat_template"):
            kwargs.setdefault(key, value)
    processor = ImageOnly(chat_template=getattr(tokenizer, "chat_template", None), **_accepted(base, kwargs))
    processor.video_processor = None
    return processor


def _processor_config(id_or_path: str) -> dict[str, Any]:
    import json

    from transformers.utils import cached_file

    try:
        path = cached_file(id_or_path, "processor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        path = None
    return json.loads(open(path).read()) if path else {}


def _accepted(cls: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    import inspect

    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def load_processor(id_or_path: str) -> Any:
    """AutoProcessor.from_pretrained; without torchvision, the image-only assembly of the same pieces."""
    id_or_path = resolve_model(id_or_path)
    try:
        return AutoProcessor.from_pretrained(id_or_path)
    except (ImportError, ValueError) as exc:  # transformers raises either when torchvision is missing
        if "torchvision" not in str(exc).lower():
            raise
        model_type = _config(id_or_path).model_type
        log.warning(
            "%s: the processor needs torchvision for its video processor; using its image-only form "
            "(images work, videos need `pip install torchvision`)",
            id_or_path,
        )
        return image_only_processor(id_or_path, model_type)
