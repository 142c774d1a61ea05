"""Shared fixtures: tiny models of real VLM families saved to folders once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A function: family name -> folder of a saved tiny model of that family (built once)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("PIL", reason="transformers' image processors need Pillow (pip install pillow)")
    from .tiny_models import BUILDERS

    built = {}

    def get(family: str):
        if family not in built:
            built[family] = BUILDERS[family](tmp_path_factory.mktemp(family))
        return built[family]

    return get
