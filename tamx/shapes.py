"""The shapes world: seeded images of 1-3 coloured shapes with captions and per-object masks.

Each scene holds 1-3 non-overlapping shapes, of distinct colours and distinct kinds, on a lightly
noisy grey background. Its caption lists the objects left to right ("a red circle and a blue
square."), so every colour word and every shape word names exactly one object, whose mask is the
ground truth. `tamx.pipeline.demo.dataset.write_folder_dataset` writes scenes in the `folder`
layout that `tamx eval` reads (docs/eval.md): each object's mask is stored twice, under its
colour and under its shape, so that both words are scored as object words against the same
pixels, and `word_classes.json` says which words are colours and which are shapes (pointing is
reported per class).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "green": (40, 165, 60),
    "blue": (45, 75, 215),
    "yellow": (235, 215, 45),
    "purple": (150, 60, 185),
    "white": (250, 250, 250),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
FUNCTION_WORDS: tuple[str, ...] = ("a", "and")
PROMPT = "Describe the image."
PROMPT_TWO = "Describe the two images."
IMAGE_SIZE = 168
MAX_OBJECTS = min(len(COLOURS), len(SHAPES))
PLACEMENT_TRIES = 10_000


@dataclass(frozen=True)
class ShapeObject:
    """One shape: its colour and kind, its centre (x, y) and radius in pixels, its mask [H, W] bool."""

    colour: str
    shape: str
    centre: tuple[int, int]
    radius: int
    mask: np.ndarray

    @property
    def phrase(self) -> str:
        return f"a {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """An image [H, W, 3] uint8 RGB and its objects, sorted left to right."""

    image: np.ndarray
    objects: tuple[ShapeObject, ...]

    @property
    def caption(self) -> str:
        return " and ".join(o.phrase for o in self.objects) + "."


def draw_shape(shape: str, centre: tuple[int, int], radius: int, size: int) -> np.ndarray:
    """The filled mask [size, size] bool of one shape inscribed in the circle (centre, radius)."""
    canvas = np.zeros((size, size), np.uint8)
    x, y = centre
    if shape == "circle":
        cv2.circle(canvas, (x, y), radius, 1, thickness=-1)
    elif shape == "square":
        half = round(radius * 0.8)
        cv2.rectangle(canvas, (x - half, y - half), (x + half, y + half), 1, thickness=-1)
    elif shape == "triangle":
        h = radius
        pts = np.array([[x, y - h], [x - int(0.95 * h), y + int(0.7 * h)], [x + int(0.95 * h), y + int(0.7 * h)]])
        cv2.fillPoly(canvas, [pts.astype(np.int32)], 1)
    elif shape == "diamond":
        pts = np.array([[x, y - radius], [x + int(0.75 * radius), y], [x, y + radius], [x - int(0.75 * radius), y]])
        cv2.fillPoly(canvas, [pts.astype(np.int32)], 1)
    else:
        raise ValueError(f"unknown shape {shape!r}; the shapes world has {', '.join(SHAPES)}")
    return canvas.astype(bool)


def make_scene(
    rng: np.random.Generator,
    size: int = IMAGE_SIZE,
    count: int | None = None,
    radius_range: tuple[int, int] = (19, 32),
    noise: float = 8.0,
) -> Scene:
    """One random scene of `count` (default: 1-3 at random) shapes drawn with `rng`."""
    count = int(rng.integers(1, 4)) if count is None else count
    if not 1 <= count <= MAX_OBJECTS:
        raise ValueError(f"a scene holds 1 to {MAX_OBJECTS} shapes (distinct colours and kinds), not {count}")
    colours = rng.choice(len(COLOURS), size=count, replace=False)
    kinds = rng.choice(len(SHAPES), size=count, replace=False)
    placed: list[tuple[int, int, int]] = []
    for _ in range(PLACEMENT_TRIES):
        if len(placed) == count:
            break
        r = int(rng.integers(radius_range[0], radius_range[1] + 1))
        x, y = (int(v) for v in rng.integers(r + 2, size - r - 2, size=2))
        # apart by 4 px beyond the enclosing circles, and 12 px apart in x so that "left to right" is clear
        if all((x - px) ** 2 + (y - py) ** 2 > (r + pr + 4) ** 2 and abs(x - px) >= 12 for px, py, pr in placed):
            placed.append((x, y, r))
    if len(placed) < count:
        raise ValueError(
            f"could not place {count} shapes of radius {radius_range} apart on a {size} px image; "
            "use a larger size, smaller radii or fewer shapes"
        )
    background = rng.integers(95, 160)
    image = np.full((size, size, 3), background, np.float32)
    image += rng.normal(0.0, noise, size=image.shape)
    names = list(COLOURS)
    objects = []
    for (x, y, r), c, k in zip(placed, colours, kinds):
        colour, shape = names[int(c)], SHAPES[int(k)]
        mask = draw_shape(shape, (x, y), r, size)
        image[mask] = np.asarray(COLOURS[colour], np.float32) + rng.normal(0.0, noise / 2, size=(int(mask.sum()), 3))
        objects.append(ShapeObject(colour, shape, (x, y), r, mask))
    objects.sort(key=lambda o: o.centre[0])
    return Scene(np.clip(image, 0, 255).astype(np.uint8), tuple(objects))


def scenes(seed: int, n: int, **kwargs) -> list[Scene]:
    """`n` scenes from one seed: the same seed gives the same scenes, bit for bit."""
    rng = np.random.default_rng(seed)
    return [make_scene(rng, **kwargs) for _ in range(n)]


def cell_labels(scene: Scene, grid: int, min_cover: float = 0.5) -> np.ndarray:
    """Which object covers each cell of a grid x grid partition: [grid, grid] int, -1 background.

    A cell belongs to an object that covers at least `min_cover` of its pixels.
    """
    size = scene.image.shape[0]
    if size % grid:
        raise ValueError(f"the grid ({grid} cells) must divide the image ({size} px)")
    labels = np.full((grid, grid), -1, np.int64)
    for i, obj in enumerate(scene.objects):
        cover = cv2.resize(obj.mask.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
        labels[cover >= min_cover] = i
        if not (cover >= min_cover).any():  # a small object still owns the cell it covers most
            labels.flat[int(np.argmax(cover))] = i
    return labels


def word_classes() -> dict[str, str]:
    """The class of every category word of the world: "colour" or "shape"."""
    return {**dict.fromkeys(COLOURS, "colour"), **dict.fromkeys(SHAPES, "shape")}
