"""explain_sample against the plain float64 reference of docs/method.md (tests/reference.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tamx import ExplainSettings, TamxError, explain_sample
from tamx.dtypes import to_float32
from tamx.errors import SampleError
from tamx.synthetic import synthetic_sample

from .reference import explain_ref

LAYOUTS = {
    "one-image": [(1, 9, 13)],
    "several-images": [(1, 6, 8), (1, 1, 7), (1, 5, 1)],
    "video": [(4, 6, 5)],
    "image-and-video": [(1, 4, 4), (3, 3, 5)],
}


def reference_for(sample, **kwargs):
    """Run the reference on a sample's arrays."""
    rows, bias = sample.lm_head.weights(sample.lm_head.ids)
    ids = sample.lm_head.ids.tolist()
    return explain_ref(
        to_float32(sample.hidden, sample.hidden_dtype).astype(np.float64),
        sample.input_ids,
        {t: rows[i].astype(np.float64) for i, t in enumerate(ids)},
        None if bias is None else {t: float(bias[i]) for i, t in enumerate(ids)},
        [(b.start, b.grid, (b.kind, b.media)) for b in sample.vision_blocks],
        sample.answer_positions.tolist(),
        sample.context_positions.tolist(),
        candidates=sample.candidate_ids,
        **kwargs,
    )


def assert_close(actual, expected, name):
    scale = max(float(np.abs(expected).max(initial=0.0)), 1e-30)
    err = float(np.abs(np.asarray(actual, np.float64) - expected).max(initial=0.0)) / scale
    assert err <= 1e-5, f"{name}: max relative error {err:.2e}"


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("bias", [False, True])
def test_agrees_with_reference(layout, bias):
    sample = synthetic_sample(grids=LAYOUTS[layout], bias=bias, seed=len(layout))
    maps = explain_sample(sample)
    ref = reference_for(sample)
    for name in ("cam", "eci", "tam", "scale", "text_relevance", "answer_relevance"):
        assert_close(getattr(maps, "final" if name == "tam" else name), ref[name], name)
    assert_close(maps.candidate_maps, ref["candidate_tam"], "candidate_maps")
    assert_close(maps.prompt_maps, ref["prompt_tam"], "prompt_maps")
    assert_close(maps.prompt_relevance, ref["prompt_relevance"], "prompt_relevance")
    assert maps.final.max() > 0 and maps.cam.shape == (20, sample.vision_size)


@pytest.mark.parametrize(
    ("settings", "ref_kwargs"),
    [
        (ExplainSettings(eci="off", filter="none"), {"eci": "off", "filter": False}),
        (ExplainSettings(eci="relevance", filter="none"), {"eci": "relevance", "filter": False}),
        (ExplainSettings(eci="off"), {"eci": "off"}),
        (ExplainSettings(eci="uniform"), {"eci": "uniform"}),
        (ExplainSettings(kernel_size=5), {"kernel_size": 5}),
        (ExplainSettings(kernel_size=1), {"kernel_size": 1}),
    ],
)
def test_settings_agree_with_reference(settings, ref_kwargs):
    sample = synthetic_sample(grids=[(1, 7, 9), (2, 4, 4)], seed=3)
    maps = explain_sample(sample, settings)
    ref = reference_for(sample, **ref_kwargs)
    for name in ("cam", "eci", "tam"):
        assert_close(getattr(maps, "final" if name == "tam" else name), ref[name], name)
    assert_close(maps.prompt_maps, ref["prompt_tam"], "prompt_maps")


def test_bfloat16_hidden_states_agree_with_reference():
    sample = synthetic_sample(grids=[(1, 8, 8)], dtype="bfloat16", seed=5)
    assert sample.hidden.dtype == np.uint16
    maps = explain_sample(sample)
    assert_close(maps.final, reference_for(sample)["tam"], "tam")


def test_no_context_keeps_the_activation_map():
    sample = synthetic_sample(grids=[(1, 6, 6)], n_context=0, n_answer=1, seed=1)
    maps = explain_sample(sample, ExplainSettings(filter="none"))
    np.testing.assert_array_equal(maps.eci, maps.cam)
    assert maps.scale.tolist() == [[0.0]]
    assert maps.text_relevance.shape == (1, 0)


def test_one_scale_per_image_not_one_joint_scale():
    """Two images with activation levels 100x apart: each image's s_i is its own least squares
    fit (docs/method.md Eq. 5), so the weak image keeps the structure a joint scale would wipe out."""
    sample = synthetic_sample(grids=[(1, 4, 4), (1, 4, 4)], n_answer=2, seed=5)
    _first, second = sample.vision_blocks
    hidden = sample.hidden_float32()
    hidden[second.start : second.stop] *= 0.01  # the second image's activations are 100x weaker
    sample.hidden = hidden.astype(sample.hidden.dtype)
    sample.hidden_dtype = "float32"
    maps = explain_sample(sample, ExplainSettings(filter="none"))
    assert maps.scale.shape == (2, 2)
    ref = reference_for(sample, filter=False)
    assert_close(maps.scale, ref["scale"], "scale")
    assert_close(maps.eci, ref["eci"], "eci")
    # per image, s_i is exactly the least-squares fit on that image's cells
    for image, cells in enumerate((slice(0, 16), slice(16, 32))):
        a, e = ref["cam"][0, cells], ref["interference"][0, cells]
        assert maps.scale[0, image] == pytest.approx(a @ e / (e @ e), rel=1e-5)
    # the joint fit is driven by the strong image: it is far from the weak image's own fit
    joint = reference_for(sample, filter=False, joint=True)
    assert joint["scale"].shape == (2, 1)
    assert abs(joint["scale"][0, 0] - maps.scale[0, 1]) > 0.1 * abs(maps.scale[0, 1])
    assert not np.allclose(joint["eci"][:, 16:], maps.eci[:, 16:], rtol=1e-3, atol=0)


def test_zero_relevance_keeps_the_activation_map():
    sample = synthetic_sample(grids=[(1, 6, 6)], seed=2)
    # Context hidden states orthogonal to every row: all relevance is 0.
    sample.hidden[sample.context_positions] = 0.0
    sample.hidden[sample.answer_positions[:-1]] = 0.0
    maps = explain_sample(sample, ExplainSettings(filter="none"))
    assert not maps.text_relevance.any() and not maps.answer_relevance.any()
    np.testing.assert_array_equal(maps.eci, maps.cam)


def test_repeated_tokens_never_subtract_their_own_class():
    sample = synthetic_sample(grids=[(1, 6, 6)], n_context=4, n_answer=3, seed=4)
    token = sample.input_ids[sample.answer_positions[0]]
    sample.input_ids[sample.context_positions] = token
    sample.input_ids[sample.answer_positions] = token
    maps = explain_sample(sample, ExplainSettings(filter="none", candidates=False))
    assert not maps.text_relevance.any() and not maps.answer_relevance.any()
    np.testing.assert_array_equal(maps.eci, maps.cam)


def test_text_relevance_of_earlier_answers_is_lower_triangular():
    maps = explain_sample(synthetic_sample(seed=6))
    assert not np.triu(maps.answer_relevance).any()
    assert np.tril(maps.answer_relevance, -1).any()


def test_prompt_tokens_see_only_earlier_blocks():
    sample = synthetic_sample(grids=[(1, 4, 4)], n_context=3, seed=7)
    # Move the prompt text before the image: its maps must be empty.
    maps = explain_sample(sample)
    assert maps.prompt_maps.shape == (3, 16) and maps.prompt_maps.any()
    sample.input_ids[:2] = sample.input_ids[sample.context_positions[:2]]
    sample.context_positions = np.array([0, 1])
    assert not explain_sample(sample).prompt_maps.any()


def test_candidates_and_prompt_can_be_skipped():
    maps = explain_sample(synthetic_sample(), ExplainSettings(candidates=False, prompt=False))
    assert maps.candidate_maps is None and maps.prompt_maps is None and maps.prompt_relevance is None


def test_nonfinite_hidden_states_count_and_act_as_zero(caplog):
    sample = synthetic_sample(grids=[(1, 5, 5)], seed=8)
    clean = sample.hidden.copy()
    start = sample.vision_blocks[0].start
    sample.hidden[start, :3] = [np.nan, np.inf, -np.inf]
    maps = explain_sample(sample)
    assert maps.nonfinite_hidden == 3
    assert "3 non-finite" in caplog.text and "synthetic" in caplog.text
    clean[start, :3] = 0.0
    sample.hidden = clean
    np.testing.assert_array_equal(maps.final, explain_sample(sample).final)


def test_missing_lm_head_row_names_sample_and_field():
    sample = synthetic_sample()
    sample.lm_head = sample.lm_head.subset(sample.lm_head.ids[1:])
    with pytest.raises(SampleError, match=r"sample 'synthetic', field 'lm_head_rows'.*no LM-head row"):
        explain_sample(sample)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"eci": "maybe"}, "unknown ECI mode"), ({"filter": "box"}, "unknown filter"), ({"kernel_size": 4}, "odd")],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(TamxError, match=message):
        ExplainSettings(**kwargs)


def test_variant_names():
    assert ExplainSettings().variant_name() == "tam"
    assert ExplainSettings(eci="off", filter="none").variant_name() == "cam"
    assert ExplainSettings(filter="none").variant_name() == "eci"
    assert ExplainSettings(eci="off").variant_name() == "rank-gaussian"
    assert ExplainSettings(eci="uniform", filter="median").variant_name() == "eci-mean-median"
    assert ExplainSettings(kernel_size=5).variant_name() == "eci-rank-gaussian-k5"


def test_explain_run_reports_one_typed_outcome_per_sample(tmp_path):
    """Done, skipped (same settings stored) and failed (other settings under the name), with the
    reason as the error says it and the variant explain_run named."""
    from tamx.pipeline.explain import explain_run

    from tamx import create_run
    from tamx.synthetic import synthetic_run_info

    run = create_run(tmp_path / "run", synthetic_run_info())
    for i in range(3):
        run.write_sample(synthetic_sample(f"s{i}", grids=[(1, 4, 5)], n_answer=2, top_k=0, seed=i))
    first = explain_run(run.path, sample_ids=["s0", "s1"])
    assert (first.variant, first.done, first.skipped, first.failed) == ("tam", ["s0", "s1"], [], {})
    explain_run(run.path, ExplainSettings(kernel_size=1), "tam", sample_ids=["s2"])
    again = explain_run(run.path)
    assert again.done == [] and again.skipped == ["s0", "s1"] and list(again.failed) == ["s2"]
    reason = again.failed["s2"]
    assert reason.startswith("sample 's2': variant 'tam' is stored with other settings") and "--overwrite" in reason


def _explain_process(run_path, *options: str) -> set[str]:
    """`tamx explain RUN OPTIONS` as a new process; the modules it imported (`python -X importtime`)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tamx.pipeline", "explain", str(run_path), "--quiet", *options],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [line.split("|")[-1] for line in done.stderr.splitlines() if line.startswith("import time:")]
    return {line.strip() for line in lines}


def test_a_default_explain_of_one_sample_does_not_import_numba(run_path):
    """The default filter runs in numpy, bf16 decodes in numpy: numba's import and first kernel
    (some 0.5 s) stay out of the process a user runs after encoding one image; a non-default
    filter loads numba and gives the maps explain_sample gives."""
    from tamx import open_run

    modules = _explain_process(run_path, "--samples", "img")
    assert "numpy" in modules and not any(name.split(".")[0] == "numba" for name in modules)
    run = open_run(run_path)
    expected = explain_sample(run.sample("img", media=False))
    np.testing.assert_array_equal(run.maps("img", "tam").final, expected.final)

    modules = _explain_process(run_path, "--samples", "video", "--filter", "median")
    assert "numba" in modules
    settings = ExplainSettings(filter="median")
    stored = open_run(run_path).maps("video", settings.variant_name())
    np.testing.assert_array_equal(stored.final, explain_sample(run.sample("video", media=False), settings).final)
