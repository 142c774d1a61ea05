"""The bundled toy VLM and its short name: every `--model` option accepts `tamx-demo` for it."""

from __future__ import annotations

from pathlib import Path

DEMO_MODEL = "tamx-demo"
MODEL_DIR = Path(__file__).parent / "model"


def resolve_model(id_or_path: str) -> str:
    """The bundled model's folder for its short name `tamx-demo`; any other id or path unchanged."""
    return str(MODEL_DIR) if id_or_path == DEMO_MODEL else id_or_path
