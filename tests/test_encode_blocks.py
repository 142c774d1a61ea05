"""VisionBlock.unmapped: placeholder tokens after a block's grid that no map covers (core records/store)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import tamx
from tamx.errors import SampleError
from tamx.synthetic import synthetic_run_info, synthetic_sample


def _with_unmapped(unmapped: int):
    """A synthetic sample whose one 2x3 block is re-described as a 2x2 grid plus `unmapped` trailing tokens."""
    sample = synthetic_sample(grids=[(1, 2, 3)], seed=4)
    (block,) = sample.vision_blocks
    sample.vision_blocks = (dataclasses.replace(block, grid=(1, 2, 2), unmapped=unmapped),)
    return sample


def test_unmapped_tokens_pass_validation_and_round_trip(tmp_path):
    info = synthetic_run_info()
    sample = _with_unmapped(2)
    sample.validate(info.special_tokens)
    run = tamx.create_run(tmp_path / "run", info)
    run.write_sample(sample)
    loaded = tamx.open_run(tmp_path / "run").sample(sample.id)
    assert loaded.vision_blocks == sample.vision_blocks and loaded.vision_size == 4
    maps = tamx.explain_sample(loaded)
    assert maps.final.shape[1] == 4 and np.isfinite(maps.final).all()


@pytest.mark.parametrize("unmapped", [0, 1, 3])
def test_wrong_unmapped_count_is_refused(unmapped):
    sample = _with_unmapped(unmapped)
    with pytest.raises(SampleError, match=r"4 cells.*holds 6 image placeholder tokens"):
        sample.validate(synthetic_run_info().special_tokens)
