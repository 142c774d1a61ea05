"""The planted benchmark: each module fixes the effect it targets, and is neutral without it.

This checks the implementation against the method's own assumptions (interference that is
the relevance-weighted sum of earlier maps, salt-and-pepper noise); it says nothing about
real models.
"""

from __future__ import annotations

import pytest

from benchmarks.planted import evaluate

SAMPLES = 6


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    result = evaluate(tmp_path_factory.mktemp("both"), SAMPLES, leak=0.8, noise=0.12)
    return {v: s.f1_iou for v, s in result.summaries.items()}


def test_each_module_beats_cam_and_tam_beats_both(both):
    assert both["cam"] < both["eci"] - 0.05
    assert both["cam"] < both["rank-gaussian"] - 0.05
    assert both["eci"] < both["tam"] and both["rank-gaussian"] < both["tam"]


def test_eci_is_neutral_without_interference(tmp_path):
    result = evaluate(tmp_path, SAMPLES, leak=0.0, noise=0.12, variants=["cam", "eci"])
    assert abs(result.summaries["eci"].f1_iou - result.summaries["cam"].f1_iou) < 0.015


def test_filter_is_neutral_without_noise(tmp_path):
    result = evaluate(tmp_path, SAMPLES, leak=0.8, noise=0.0, variants=["cam", "rank-gaussian"])
    assert abs(result.summaries["rank-gaussian"].f1_iou - result.summaries["cam"].f1_iou) < 0.025
