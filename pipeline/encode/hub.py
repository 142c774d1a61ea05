"""Check a --model value before torch loads: a local folder, the bundled toy, a cached hub
model, or one the Hugging Face hub has, asked once.

transformers asks the hub for each file with five retries and backoff: a typo, offline,
took half a minute of repeated warnings before its message. Here a model id that is neither a
folder nor cached is looked up once, with no retries, or refused at once when the hub is
offline (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE); a near-miss of `tamx-demo` is named.
"""

from __future__ import annotations

import difflib
import functools
import os
from pathlib import Path

from tamx.errors import TamxError

from ..demo import DEMO_MODEL
from ..errors import one_line

HUB_TIMEOUT_S = 10.0
_TRUE = {"1", "on", "yes", "true"}


class UnknownModel(TamxError):
    """A --model value that names no local folder and no model the hub has (a bad option)."""


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off in this environment (read now, not at import)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _did_you_mean(model_id: str) -> str:
    return f"; did you mean {DEMO_MODEL}?" if difflib.get_close_matches(model_id, [DEMO_MODEL], n=1, cutoff=0.6) else ""


@functools.lru_cache(maxsize=16)  # a found model is asked for once per process (a refusal raises: not kept)
def check_model(model_id: str) -> str:
    """Return `model_id` if it can be loaded from here, else raise UnknownModel (no such folder
    or hub model) or TamxError (the hub cannot be reached) with one line; never retries."""
    if model_id == DEMO_MODEL or Path(model_id).expanduser().exists():
        return model_id
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, HFValidationError, RepositoryNotFoundError
    except ImportError:  # without the [encode] extra: loading says what to install
        return model_id

    hint = _did_you_mean(model_id)
    not_folder = f"model {model_id!r} is not a local folder"
    try:
        cached = try_to_load_from_cache(model_id, "config.json")
    except HFValidationError:
        raise UnknownModel(f"{not_folder}, nor a Hugging Face model id (owner/name){hint}") from None
    if isinstance(cached, str):
        return model_id
    if hub_offline():
        raise UnknownModel(
            f"{not_folder}, nor in the Hugging Face cache, and the hub is offline (HF_HUB_OFFLINE){hint}"
        )
    from huggingface_hub import HfApi

    endpoint = os.environ.get("HF_ENDPOINT") or None  # read now: tests and users may set it late
    try:
        HfApi(endpoint=endpoint).model_info(model_id, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        return model_id  # it exists; loading says how to get access
    except RepositoryNotFoundError:
        raise UnknownModel(
            f"{not_folder}, nor a model on the Hugging Face hub (a private one needs `hf auth login`){hint}"
        ) from None
    except HfHubHTTPError:
        return model_id  # the hub answered otherwise (rate limit, server error): let loading report it
    except Exception as exc:  # the HTTP client's own connection errors (httpx, requests) share no base
        reason = one_line(exc) or type(exc).__name__
        raise TamxError(
            f"{not_folder} and not in the Hugging Face cache, and the hub cannot be reached ({reason}); "
            f"connect to the internet, or give a local model folder{hint}"
        ) from None
    return model_id


def check_model_option(value: str | None) -> str | None:
    """`check_model` for a --model option: a model that does not exist is a bad option (status 2)."""
    import click

    if value is None:
        return value
    try:
        return check_model(value)
    except UnknownModel as exc:
        raise click.BadParameter(str(exc), param_hint="'--model'") from None


def model_option(ctx, param, value: str | None) -> str | None:
    """A click callback for --model (`check_model_option`)."""
    return check_model_option(value)
