"""Shared fixtures: synthetic runs written through the public store API."""

from __future__ import annotations

import pytest

from tamx import create_run
from tamx.synthetic import synthetic_run_info, synthetic_sample

LAYOUTS = {
    "img": [(1, 9, 13)],
    "multi": [(1, 6, 8), (1, 4, 4)],
    "video": [(3, 5, 6)],
}


@pytest.fixture
def run_path(tmp_path):
    """A run with three bf16 samples (one image, two images, a video), not yet explained."""
    path = tmp_path / "run"
    run = create_run(path, synthetic_run_info(dtype="bfloat16"))
    for seed, (name, grids) in enumerate(LAYOUTS.items()):
        run.write_sample(synthetic_sample(name, grids=grids, dtype="bfloat16", seed=seed, bias=seed == 1))
    return path
