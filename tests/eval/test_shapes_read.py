"""Reading shapes-world images back: exact on ground-truth renders, tolerant of noise and blur, fast."""

from __future__ import annotations

import time
from collections import Counter, deque

import numpy as np
import pytest
import torch

from hydra_x.data.shapes import BACKGROUND, COLOURS, render_clip, render_image
from hydra_x.data.shapes_text import ShapesWorld, answer_question, questions
from hydra_x.eval.shapes_read import (
    label_components,
    read_clip,
    read_motion,
    read_objects,
    read_scene,
    relation,
)


def _degrade(x: torch.Tensor, sigma: float, noise: float, seed: int) -> torch.Tensor:
    """A separable Gaussian blur and Gaussian noise: a stand-in for a model's imperfect output."""
    k = np.exp(-(np.arange(-2, 3) ** 2) / (2 * sigma**2))
    k /= k.sum()
    h, w = x.shape[1:]
    y = np.pad(x.numpy(), ((0, 0), (2, 2), (2, 2)), mode="edge")  # (3, H + 4, W + 4)
    y = sum(k[i] * y[:, :, i : i + w] for i in range(5))  # (3, H + 4, W)
    y = sum(k[i] * y[:, i : i + h] for i in range(5))  # (3, H, W)
    y = y + noise * np.random.default_rng(seed).standard_normal(y.shape)
    return torch.from_numpy(y.astype(np.float32))


def _nearest(found, o):
    return min((d for d in found if d.kind == o.kind), key=lambda d: (d.cx - o.cx) ** 2 + (d.cy - o.cy) ** 2)


def _assert_read_back(scene, found, height: int, width: int, tol_px: float = 1.5) -> None:
    assert sorted(o.kind for o in found) == sorted(o.kind for o in scene.objects), scene
    for o in scene.objects:
        d = _nearest(found, o)
        assert abs(d.cx - o.cx) * width <= tol_px and abs(d.cy - o.cy) * height <= tol_px, (o, d)
    if scene.kind == "relation":
        a, b = (next(d for d in found if d.kind == o.kind) for o in scene.objects)
        assert relation(a, b) == scene.relation
    if scene.kind == "count":
        assert Counter(d.kind for d in found)[scene.objects[0].kind] == scene.count


@pytest.mark.parametrize(("height", "width", "n"), [(64, 64, 400), (96, 128, 250), (256, 256, 100)])
def test_reads_every_ground_truth_render_exactly(height, width, n):
    world = ShapesWorld(seed=11, split="train" if height != 96 else "heldout")
    for k in range(n):
        scene = world.scene(k)
        found = read_objects(render_image(scene, height, width))
        _assert_read_back(scene, found, height, width)
        for o in scene.objects:  # coverage-weighted area: the drawn area, not a pixel count
            side = o.size * min(height, width)
            drawn = side**2 * {"circle": np.pi / 4, "square": 1, "triangle": 0.5}[o.shape]
            assert _nearest(found, o).area == pytest.approx(drawn, rel=0.05)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (96, 128)])
def test_tolerates_noise_and_slight_blur(height, width):
    world = ShapesWorld(seed=12)
    for k in range(200):
        scene = world.scene(k)
        x = _degrade(render_image(scene, height, width), sigma=0.7, noise=0.05, seed=k)
        _assert_read_back(scene, read_objects(x), height, width, tol_px=2.0)


@pytest.mark.parametrize("contrast", [0.7, 1.15])
def test_tolerates_dimmed_and_overbright_colours(contrast):
    bg = torch.tensor(BACKGROUND, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    world = ShapesWorld(seed=17)
    for k in range(100):
        scene = world.scene(k)
        x = (bg + contrast * (render_image(scene, 64, 64) - bg)).clamp(-1, 1)
        _assert_read_back(scene, read_objects(_degrade(x, sigma=0.5, noise=0.03, seed=k)), 64, 64, tol_px=2.0)


def test_answers_recomputed_from_the_read_back_match_the_text():
    world = ShapesWorld(seed=13)
    for k in range(150):
        sample = world.question_sample(k)
        read = read_scene(render_image(sample.scene, 64, 64))
        assert answer_question(sample.question, read) == sample.question.answer
        for q in questions(sample.scene):  # every question, not only the sampled one
            assert answer_question(q, read) == q.answer, q


def test_clip_objects_move_the_stated_way_every_frame():
    world = ShapesWorld(seed=14)
    for k in range(40):
        sample = world.clip_sample(k)
        clip = render_clip(sample.clip, 8, 64, 64)  # (3, F, H, W)
        frames = read_clip(clip)
        for m in sample.clip.objects:
            path = np.array([next(d.centroid for d in f if d.kind == m.start.kind) for f in frames])  # (F, 2)
            step = np.diff(path, axis=0)  # (F - 1, 2) in px
            along = {"left": -step[:, 0], "right": step[:, 0], "up": -step[:, 1], "down": step[:, 1]}[m.direction]
            across = step[:, 1] if m.direction in ("left", "right") else step[:, 0]
            assert along.min() > 1.0 and np.abs(across).max() < 0.3, (m, step)
        assert read_motion(clip) == {m.start.kind: m.direction for m in sample.clip.objects}
        assert read_motion(clip)[(sample.question.colour, sample.question.shape)] == sample.question.answer


def test_edits_read_back_as_instructed():
    world = ShapesWorld(seed=15)
    for k in range(120):
        e = world.edit_sample(k)
        before = read_objects(render_image(e.source, 96, 96))
        after = read_objects(render_image(e.target, 96, 96))
        assert Counter(d.kind for d in before) == Counter(o.kind for o in e.source.objects)
        assert Counter(d.kind for d in after) == Counter(o.kind for o in e.target.objects)
        if e.op in ("move", "resize"):
            (a,) = (d for d in before if d.kind == e.source.objects[e.source_index].kind)
            (b,) = (d for d in after if d.kind == e.target.objects[e.target_index].kind)
            if e.op == "resize":
                assert b.area / a.area == pytest.approx(2.25 if e.instruction.endswith("bigger") else 1 / 2.25, rel=0.1)
            else:
                word = e.instruction.split()[-1]
                assert relation(b, a) == {"left": "left", "right": "right", "up": "above", "down": "below"}[word]


def _reference_labels(classes: np.ndarray) -> int:
    """Number of 4-connected same-class components, by breadth-first search."""
    seen = np.zeros(classes.shape, dtype=bool)
    count = 0
    for start in zip(*np.nonzero(classes >= 0)):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                inside = 0 <= ny < classes.shape[0] and 0 <= nx < classes.shape[1]
                if inside and not seen[ny, nx] and classes[ny, nx] == classes[y, x]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
    return count


def test_labelling_matches_breadth_first_search():
    rng = np.random.default_rng(0)
    for density in (0.3, 0.55, 0.75):
        classes = np.where(rng.random((40, 50)) < density, rng.integers(0, 3, (40, 50)), -1)
        labels = label_components(classes)
        assert len(np.unique(labels[labels >= 0])) == _reference_labels(classes)
        for lab in np.unique(labels[labels >= 0]):  # one class per component
            assert len(np.unique(classes[labels == lab])) == 1
    spiral = np.full((9, 9), -1)  # one long winding component that only joins up at the end
    spiral[0, :] = spiral[:, 8] = spiral[8, :] = spiral[2:, 0] = spiral[2, :7] = spiral[2:7, 6] = 0
    spiral[6, 2:7] = spiral[4:7, 2] = spiral[4, 2:5] = 0
    assert len(np.unique(label_components(spiral)[spiral >= 0])) == 1
    diagonal = np.array([[0, -1], [-1, 0]])  # 4-connectivity: corners do not join
    assert len(np.unique(label_components(diagonal)[diagonal >= 0])) == 2


def test_ignores_background_noise_and_colours_off_the_palette():
    bg = torch.tensor(BACKGROUND, dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    x = bg.expand(3, 64, 64) + 0.05 * torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert read_objects(x) == []
    x = x.clone()
    x[:, 10:30, 10:30] = 1.0  # white: not a palette colour
    x[:, 40:60, 40:60] = torch.tensor([0.0, 0.0, 0.0]).view(3, 1, 1)  # mid grey
    assert read_objects(x) == []
    red = torch.tensor(COLOURS["red"], dtype=torch.float32).view(3, 1, 1) / 127.5 - 1
    x[:, 40:41, 40:42] = red  # two pixels: below the minimum area
    assert read_objects(x) == []


def test_reading_256_px_is_fast():
    world = ShapesWorld(seed=16)
    images = [render_image(world.scene(k), 256, 256) for k in range(20)]
    full = torch.tensor(COLOURS["blue"], dtype=torch.float32).view(3, 1, 1).expand(3, 256, 256) / 127.5 - 1
    for x in (*images, full):  # warm up; CPU time below, so other processes on the machine do not count
        read_objects(x)
    times = []
    for x in images:
        start = time.process_time()
        read_objects(x)
        times.append(time.process_time() - start)
    start = time.process_time()
    (whole,) = read_objects(full)  # worst case: every pixel in one component
    assert whole.area == pytest.approx(256 * 256) and whole.shape == "square"
    assert np.median(times) < 0.02 and time.process_time() - start < 0.1


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) image tensor"):
        read_objects(torch.zeros(64, 64))
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) image tensor"):
        read_objects(torch.zeros(4, 64, 64))
    with pytest.raises(ValueError, match=r"expected a \(3, H, W\) image tensor.*ndarray"):
        read_objects(np.zeros((3, 64, 64)))
    with pytest.raises(ValueError, match=r"expected a \(3, F, H, W\) clip tensor"):
        read_clip(torch.zeros(3, 64, 64))
