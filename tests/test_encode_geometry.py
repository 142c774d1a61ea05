"""Every map on the right pixels: the stored geometry of every family, checked by markers
through the real processor classes, and the projection that scoring and drawing use."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tamx.pipeline.encode.adapters import supported_model_types

import tamx
from tamx.geometry import Canvas, frame_groups, project_frames
from tamx.layout import MapFrame, frame_table, grid_boxes, map_frames, with_grid_boxes
from tamx.records import VisionBlock

# (family, width, height, grids expected, processor call options)
SHAPES = {"square": (224, 224), "2:1": (336, 168), "1:3": (100, 300), "20x20": (20, 20), "large": (1600, 1200)}
FAMILIES = supported_model_types()  # every model_type of the adapter registry
# sizes giving 1, 2 and 6 tiles (the thumbnail / base view / whole image come on top)
TILED = [
    ("internvl", (224, 224), 1, {}),
    ("internvl", (448, 224), 2 + 1, {}),
    ("internvl", (672, 448), 6 + 1, {}),
    ("llava_onevision", (384, 384), 1 + 1, {}),
    ("llava_onevision", (768, 384), 2 + 1, {}),
    ("llava_onevision", (1152, 768), 6 + 1, {}),
    ("gemma3", (224, 224), 1, {"do_pan_and_scan": True}),
    ("gemma3", (1600, 1200), 2 + 1, {"do_pan_and_scan": True}),
    ("gemma3", (2000, 300), 4 + 1, {"do_pan_and_scan": True}),
]


@pytest.fixture(scope="module")
def family_processor(tiny_model_dir):
    from tamx.pipeline.encode.loading import load_processor
    from transformers import AutoConfig

    cache = {}

    def get(family):
        if family not in cache:
            path = tiny_model_dir(family)
            cache[family] = (load_processor(str(path)), AutoConfig.from_pretrained(path))
        return cache[family]

    return get


def _check_markers(family_processor, family, width, height, expected_grids=None, **kwargs):
    from .geometry_markers import inside, locate, marker_points

    processor, config = family_processor(family)
    for x, y in marker_points(width, height)[:3]:
        error, grids, specs, allowed = locate(processor, config, width, height, x, y, **kwargs)
        if expected_grids is not None:
            assert grids == expected_grids, (family, width, height, grids)
        if error is None:  # cropped away: no grid may claim the marker's pixel
            assert not inside(specs, x, y), (family, width, height, x, y)
        else:
            assert error <= allowed, f"{family} {width}x{height}: marker at ({x:.0f}, {y:.0f}) off by {error:.2f} cells"
    assert all(s.box is not None and s.image_size == (width, height) for s in specs)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("family", FAMILIES)
def test_marker_lands_on_its_cell(family_processor, family, shape):
    """The cell whose pixels in pixel_values hold the marker maps back onto the marker's pixel."""
    _check_markers(family_processor, family, *SHAPES[shape])


@pytest.mark.parametrize(("family", "size", "grids", "options"), TILED)
def test_marker_lands_on_its_tile(family_processor, family, size, grids, options):
    _check_markers(family_processor, family, *size, expected_grids=grids, **options)


def test_llava_expand_to_square_puts_padding_outside_the_image(family_processor):
    """The original LLaVA `pad`: cells on the padding lie outside the image, the marker still lands."""
    from transformers import LlavaImageProcessor

    from .geometry_markers import locate

    processor, config = family_processor("llava")
    original = processor.image_processor
    processor.image_processor = LlavaImageProcessor(do_pad=True)
    try:
        for x, y in ((40, 30), (300, 150)):
            error, _, (spec,), allowed = locate(processor, config, 336, 168, x, y)
            assert error is not None and error <= allowed
    finally:
        processor.image_processor = original
    x0, y0, x1, y1 = spec.box
    assert (x0, x1) == (0.0, 336.0) and y0 < 0 and y1 > 168  # padding above and below


def test_a_centre_crop_is_drawn_only_where_the_model_looked():
    """The reported bug: LLaVA-1.5 on 336x168 sees x = 84..252 only; heat of columns 1-5 lands there."""
    block = VisionBlock(start=0, grid=(1, 16, 16), box=(84.0, 0.0, 252.0, 168.0), image_size=(336, 168))
    (frame,) = map_frames([block])
    grid = np.zeros((16, 16), np.float32)
    grid[4:8, 1:6] = 1.0
    heat, seen = project_frames(grid.ravel(), [frame], (168, 336))
    columns = np.flatnonzero(heat.max(axis=0) > 0.5)
    assert columns.min() >= 84 + 1 * 10.5 - 6 and columns.max() <= 84 + 6 * 10.5 + 6  # cells of 10.5 px
    assert not seen[:, :84].any() and not seen[:, 252:].any() and seen[:, 84:252].all()
    assert heat[:, :84].max() == 0


def test_whole_image_projection_is_the_plain_resize():
    import cv2

    grid = np.random.default_rng(0).integers(0, 256, (6, 9), dtype=np.uint8)
    for block in (VisionBlock(0, (1, 6, 9)), VisionBlock(0, (1, 6, 9), box=(0, 0, 90, 60), image_size=(90, 60))):
        heat, seen = project_frames(grid.ravel(), map_frames([block]), (60, 90))
        np.testing.assert_array_equal(heat, cv2.resize(grid, (90, 60), interpolation=cv2.INTER_LINEAR))
        assert seen.all() and heat.dtype == np.uint8


def test_tiles_compose_at_the_finest_resolution_or_mean():
    """Two tiles and a thumbnail of one 200x100 image: 'finest' takes the tiles, 'mean' averages."""
    canvas = Canvas.source(200, 100)
    blocks = [
        VisionBlock(0, (1, 2, 2), box=canvas.tile(1, 2, 0, 0).box, image_size=(200, 100), label="tile 1,1"),
        VisionBlock(4, (1, 2, 2), box=canvas.tile(1, 2, 0, 1).box, image_size=(200, 100), label="tile 1,2"),
        VisionBlock(8, (1, 2, 2), box=canvas.box, image_size=(200, 100), label="thumbnail"),
    ]
    frames = map_frames(blocks)
    assert [f.label for f in frames] == ["tile 1,1", "tile 1,2", "thumbnail"] and len(frame_groups(frames)) == 1
    values = np.array([1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4], np.float32)
    finest, seen = project_frames(values, frames, (100, 200), compose="finest")
    assert seen.all() and set(np.unique(finest[:, :100])) == {1.0} and set(np.unique(finest[:, 100:])) == {2.0}
    mean, _ = project_frames(values, frames, (100, 200), compose="mean")
    np.testing.assert_allclose(mean[:, :100], 2.5) and np.testing.assert_allclose(mean[:, 100:], 3.0)


def test_tiled_block_cells_are_ordered_tile_by_tile_and_filtered_per_tile():
    """A stitched grid with row newlines (LLaVA-OneVision): cells skip the newlines, each tile is its
    own contiguous grid, and filter frames never cross the seam."""
    block = VisionBlock(
        start=10, grid=(1, 2, 4), row_newline=True, separator="image_newline",
        tiles=((0, 0, 2, 2), (0, 2, 2, 2)), tile_boxes=((0, 0, 50, 50), (50, 0, 100, 50)),
    )  # fmt: skip
    assert block.tokens == 10 and block.stop == 20
    # row 0: 10..13 + newline 14; row 1: 15..18 + newline 19; tile 1 first, then tile 2
    assert block.positions().tolist() == [10, 11, 15, 16, 12, 13, 17, 18]
    assert frame_table([block]).tolist() == [[0, 2, 2], [4, 2, 2]]
    assert [f.box for f in map_frames([block])] == [(0, 0, 50, 50), (50, 0, 100, 50)]
    boxes, owners = grid_boxes([block])
    assert boxes.shape == (2, 4) and owners.tolist() == [0, 0]
    assert with_grid_boxes([block], boxes, owners) == [block]
    assert VisionBlock.from_json(block.to_json()) == block


def test_old_blocks_without_geometry_still_draw_over_the_whole_image():
    (frame,) = map_frames([VisionBlock(0, (1, 3, 4))])
    assert frame == MapFrame(0, 3, 4, 0, "image", 0, label="image")
    heat, seen = project_frames(np.ones(12, np.float32), [frame], (30, 40))
    assert seen.all() and np.allclose(heat, 1.0)
    boxes, _ = grid_boxes([VisionBlock(0, (1, 3, 4))])
    assert np.isnan(boxes).all() and with_grid_boxes([VisionBlock(0, (1, 3, 4))], boxes, [0])[0].box is None


def test_interchange_carries_the_boxes(tmp_path):
    """`vision_boxes` [G, 4] float64 and `vision_grid_blocks` [G] int64; files without them import
    with the whole image assumed (box None)."""
    from safetensors.numpy import load_file, save_file
    from tamx.pipeline.interchange import export_sample

    from tamx.interchange import import_sample
    from tamx.synthetic import synthetic_run_info, synthetic_sample

    sample = synthetic_sample(grids=[(1, 3, 4), (1, 2, 2)], seed=3)
    first, second = sample.vision_blocks
    sample.vision_blocks = (dataclasses.replace(first, box=(10.0, 0.0, 50.0, 30.0), image_size=(60, 30)), second)
    path = tmp_path / "s.safetensors"
    export_sample(path, sample, synthetic_run_info())
    tensors = load_file(str(path))
    assert tensors["vision_boxes"].dtype == np.float64 and tensors["vision_boxes"].shape == (2, 4)
    assert tensors["vision_grid_blocks"].tolist() == [0, 1]
    loaded, _, _ = import_sample(path)
    assert loaded.vision_blocks[0].box == (10.0, 0.0, 50.0, 30.0) and loaded.vision_blocks[1].box is None
    bare = {k: v for k, v in tensors.items() if not k.startswith(("vision_boxes", "vision_grid_blocks", "media."))}
    save_file(bare, str(tmp_path / "bare.safetensors"))
    plain, _, _ = import_sample(tmp_path / "bare.safetensors")
    assert all(b.box is None for b in plain.vision_blocks)


def _map_index(frames, block_index: int, block, row: int, col: int) -> int:
    """The map-vector index of cell (row, col) of a block's grid (tiles: inside its tile's frame)."""
    own = [f for f in frames if f.block == block_index]
    if not block.tiles:
        return own[0].offset + row * block.grid[2] + col
    for frame, (r, c, n, m) in zip(own, block.tiles):
        if r <= row < r + n and c <= col < c + m:
            return frame.offset + (row - r) * m + (col - c)
    raise AssertionError("cell outside every tile")


@pytest.mark.parametrize(
    ("family", "size", "marker"), [("llava", (336, 168), (200, 100)), ("llava_onevision", (768, 384), (500, 120))]
)
def test_encode_then_projection_puts_a_one_hot_map_on_the_marker(tiny_model_dir, tmp_path, family, size, marker):
    """End to end: encode an image with a marker; the cell holding the marker (found in pixel_values)
    as a one-hot map, projected through the STORED geometry, peaks on the marker's pixel."""
    import cv2
    from tamx.pipeline.encode import encode, inline_input, load_model, load_processor
    from transformers import AutoConfig

    from .geometry_markers import marker_cells, marker_image, run_processor

    path = tiny_model_dir(family)
    processor, config = load_processor(str(path)), AutoConfig.from_pretrained(path)
    image = marker_image(*size, *marker)
    cv2.imwrite(str(tmp_path / "marker.png"), image[:, :, ::-1])
    sample = inline_input((str(tmp_path / "marker.png"),), None, "Describe the image.", "A dot.", "m")
    report = encode(load_model(str(path), device="cpu", dtype="fp32"), processor, [sample], tmp_path / "run")
    assert report.failed == {}
    stored = tamx.open_run(tmp_path / "run").sample("m")
    assert all(b.unmapped == 0 or b.separator for b in stored.vision_blocks)  # no content left unmapped
    # the model's cell of the marker, from the processor's pixels alone
    _, specs, processed = run_processor(processor, config, image)
    evidence = marker_cells(processor, config, processed, specs)[-1]  # the finest grid: the last block
    row, col = np.unravel_index(int(np.argmax(evidence)), evidence.shape)
    frames = map_frames(stored.vision_blocks)
    last = len(stored.vision_blocks) - 1
    one_hot = np.zeros(stored.vision_size, np.float32)
    one_hot[_map_index(frames, last, stored.vision_blocks[last], int(row), int(col))] = 1.0
    (group,) = frame_groups(frames)
    heat, _seen = project_frames(one_hot, group, (size[1], size[0]))
    ys, xs = np.nonzero(heat >= heat.max() * 0.999)
    frame = next(f for f in frames if f.block == last and f.offset <= np.argmax(one_hot) < f.offset + f.size)
    cell_w = (frame.box[2] - frame.box[0]) / frame.width
    assert abs(xs.mean() + 0.5 - (marker[0] + 0.5)) <= 0.5 * cell_w + 1
    assert abs(ys.mean() + 0.5 - (marker[1] + 0.5)) <= 0.5 * cell_w + 1


def test_eval_scores_a_cropped_map_where_the_model_looked():
    """LLaVA-1.5's centre crop of a 336x168 image: the map is scored on x = 84..252 only, where it
    lies; stretched over the whole image (the old behaviour) the same map misses the object."""
    from tamx.metrics import Word, project_sample_maps, score_answer
    from tamx.pos import NOUN
    from tamx.synthetic import synthetic_sample

    sample = synthetic_sample(grids=[(1, 4, 4)], seed=1)
    (block,) = sample.vision_blocks
    cropped = dataclasses.replace(block, box=(84.0, 0.0, 252.0, 168.0), image_size=(336, 168))
    maps = np.zeros((1, 16), np.uint8)
    maps[0, 1 * 4 + 0] = 255  # cell (row 1, col 0): x = 84..126, y = 42..84 (stretched: x = 0..84)
    truth = np.zeros((168, 336), bool)
    truth[42:84, 84:126] = True
    words = [Word("cat", (0,), NOUN, "cat")]
    sample.vision_blocks = (cropped,)
    projected, seen = project_sample_maps(sample, maps, truth.shape)
    assert seen[:, 84:252].all() and not seen[:, :84].any() and not seen[:, 252:].any()
    placed = score_answer("s", words, projected, {"cat": truth}, seen).objects[0].iou
    sample.vision_blocks = (block,)  # no box: the grid stretched over the whole image
    stretched = score_answer("s", words, project_sample_maps(sample, maps, truth.shape)[0], {"cat": truth})
    assert placed > 0.5 and stretched.objects[0].iou < 0.2
    # pixels outside the crop are never foreground, and an object there is not scored against the map
    outside = np.zeros_like(truth)
    outside[:, :60] = True
    assert score_answer("s", words, projected, {"cat": outside}, seen).objects[0].iou == 0.0


def test_gemma3_pan_and_scan_crops_are_encoded_as_blocks_of_one_image(tiny_model_dir, tmp_path):
    """A checkpoint configured for pan and scan: the whole image plus its crops, one ECI scale."""
    import json
    import shutil

    import cv2
    from tamx.pipeline.encode import encode, inline_input, load_model, load_processor

    folder = tmp_path / "gemma3-pas"
    shutil.copytree(tiny_model_dir("gemma3"), folder)
    config = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**config, "do_pan_and_scan": True}))
    image = tmp_path / "wide.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (400, 1200, 3), dtype=np.uint8))
    model, processor = load_model(str(folder), device="cpu", dtype="fp32"), load_processor(str(folder))
    sample = inline_input((str(image),), None, "Describe it.", "A cat.", "wide")
    assert encode(model, processor, [sample], tmp_path / "run").failed == {}
    stored = tamx.open_run(tmp_path / "run").sample("wide")
    assert [(b.label, b.box) for b in stored.vision_blocks] == [
        ("whole image", (0.0, 0.0, 1200.0, 400.0)),
        ("crop 1", (0.0, 0.0, 400.0, 400.0)),
        ("crop 2", (400.0, 0.0, 800.0, 400.0)),
        ("crop 3", (800.0, 0.0, 1200.0, 400.0)),
    ]
    assert "".join(stored.tokens[q] for q in stored.context_positions) == "Describe it."
    assert tamx.explain_sample(stored).scale.shape == (len(stored.answer_positions), 1)
