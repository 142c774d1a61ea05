"""The shapes world: seeded scenes, masks that are the drawn shapes, captions left to right, the folder layout."""

import json

import numpy as np
import pytest
from tamx.pipeline.demo.dataset import write_folder_dataset

from tamx.datasets import load_dataset
from tamx.shapes import COLOURS, SHAPES, cell_labels, make_scene, scenes


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, b, c = scenes(3, 5), scenes(3, 5), scenes(4, 5)
    for x, y in zip(a, b):
        assert np.array_equal(x.image, y.image) and x.caption == y.caption
        assert all(np.array_equal(o.mask, p.mask) for o, p in zip(x.objects, y.objects))
    assert any(not np.array_equal(x.image, z.image) for x, z in zip(a, c))


@pytest.mark.parametrize("count", [1, 2, 3])
def test_masks_are_the_drawn_disjoint_shapes(count):
    rng = np.random.default_rng(count)
    for _ in range(10):
        scene = make_scene(rng, count=count)
        assert len(scene.objects) == count
        union = np.zeros(scene.image.shape[:2], int)
        for obj in scene.objects:
            assert obj.mask.sum() > 300
            union += obj.mask
            # the pixels of the mask carry the object's colour (up to the noise); its surroundings do not
            inside = scene.image[obj.mask].astype(float).mean(0)
            assert np.abs(inside - np.asarray(COLOURS[obj.colour])).max() < 12
        assert union.max() == 1, "objects overlap"
        assert len({o.colour for o in scene.objects}) == count and len({o.shape for o in scene.objects}) == count


def test_caption_lists_objects_left_to_right():
    for scene in scenes(7, 30):
        xs = [np.nonzero(o.mask)[1].mean() for o in scene.objects]
        assert xs == sorted(xs)
        expected = " and ".join(f"a {o.colour} {o.shape}" for o in scene.objects) + "."
        assert scene.caption == expected
        words = scene.caption.rstrip(".").split()
        assert set(words) <= {"a", "and", *COLOURS, *SHAPES}


def test_cell_labels_follow_the_masks():
    scene = scenes(0, 1)[0]
    labels = cell_labels(scene, 12)
    for i, obj in enumerate(scene.objects):
        ys, xs = np.nonzero(labels == i)
        assert len(ys) >= 1
        assert obj.mask[ys * 14 + 7, xs * 14 + 7].mean() > 0.6


def test_folder_dataset_is_read_by_the_eval_loader(tmp_path):
    entries = write_folder_dataset(tmp_path, 6, seed=1)
    assert json.loads((tmp_path / "anno.json").read_text()) == entries
    records = load_dataset("folder", tmp_path)
    assert [r.id for r in records] == [e["id"] for e in entries]
    for record, scene in zip(records, scenes(1, 6)):
        masks = record.masks()
        assert record.captions == [scene.caption]
        assert set(masks) == {w for o in scene.objects for w in (o.colour, o.shape)}
        for obj in scene.objects:
            assert np.array_equal(masks[obj.colour], obj.mask) and np.array_equal(masks[obj.shape], obj.mask)


def test_scene_errors_say_what_is_wrong():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="1 to 4 shapes"):
        make_scene(rng, count=5)
    with pytest.raises(ValueError, match="could not place"):
        make_scene(rng, size=40, count=3, radius_range=(10, 12))
    with pytest.raises(ValueError, match="must divide"):
        cell_labels(scenes(0, 1)[0], 13)


def test_shapes_command_writes_the_dataset_and_both_manifests(tmp_path):
    from click.testing import CliRunner
    from tamx.pipeline.cli import main

    from tamx.pointing import read_word_classes
    from tamx.shapes import PROMPT

    out = tmp_path / "shapes"
    result = CliRunner().invoke(main, ["shapes", "--out", str(out), "--scenes", "4", "--seed", "3"])
    assert result.exit_code == 0, result.output
    records = load_dataset("folder", out)
    assert [r.captions for r in records] == [[s.caption] for s in scenes(3, 4)]
    assert read_word_classes(out)["red"] == "colour" and read_word_classes(out)["circle"] == "shape"
    given = [json.loads(line) for line in (out / "manifest-true.jsonl").read_text().splitlines()]
    free = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [g["answer"] for g in given] == [r.captions[0] for r in records]
    assert all("answer" not in f for f in free) and [f["id"] for f in free] == [r.id for r in records]
    image, text = free[0]["messages"][0]["content"]
    assert text == {"type": "text", "text": PROMPT} and (out / image["image"]).is_file()
    again = CliRunner().invoke(main, ["shapes", "--out", str(out), "--scenes", "2"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert CliRunner().invoke(main, ["shapes", "--out", str(out), "--scenes", "2", "--overwrite"]).exit_code == 0
    assert len(load_dataset("folder", out)) == 2
