"""Reading a shapes-world image back into objects, to score what a model generated against what was asked.

Pixels are classified by colour as a mix of the background and one palette colour: for each palette colour
the pixel is projected on the line from the background through it, giving a coverage ``alpha`` and a distance
off the line; the nearest line wins if the distance is small and the pixel is at least half covered. Antialiased
and blurred edges are such mixes, so they fall to their own colour or to the background, never to a third
colour that happens to lie nearer (half orange is nearer yellow than full orange). Same-colour pixels are then
grouped into 4-connected components (a vectorised union-find: no scipy) and small ones dropped.

Each component is measured on its colour's coverage over its pixels and a one-pixel ring (sums of coverage
survive blur and average noise out, pixel counts do neither), relative to the coverage of its own interior (so a
dimmed or over-bright object measures as a full one), and classified by the nearest ideal value of two
features: the fill ratio, area over (longest row x longest column), which is the bounding-box fill ratio of the
drawn shapes (square 1, circle pi/4, triangle 1/2), and the skewness of the area along y (0 for the symmetric
shapes, -0.57 for the upright triangle, whose fill ratio blur raises most).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from hydra_x.data.shapes import BACKGROUND, COLOURS, Scene, ShapeObject

_PALETTE = np.asarray(list(COLOURS.values()), dtype=np.float32) / 127.5 - 1.0  # (K, 3) in [-1, 1]
_BACKGROUND = np.asarray(BACKGROUND, dtype=np.float32) / 127.5 - 1.0  # (3,)
_DIRS = (_PALETTE - _BACKGROUND).astype(np.float32)  # (K, 3): from the background to each colour
_NORMS = (_DIRS**2).sum(axis=1)  # (K,)
# (fill, skew) of each rendered shape, see DetectedObject.
_PROTOTYPES = {"circle": (math.pi / 4, 0.0), "square": (1.0, 0.0), "triangle": (0.5, -2 * math.sqrt(2) / 5)}


@dataclass(frozen=True)
class DetectedObject:
    """One connected same-colour region. Pixel coordinates: pixel (row y, column x) covers [x, x + 1) x [y, y + 1).

    ``bbox`` (x0, y0, x1, y1), end exclusive, holds the pixels at least half covered; ``area`` (in pixels) and
    ``centroid`` (x, y) weigh every pixel by its coverage, so they are sub-pixel and survive blur."""

    colour: str
    shape: str
    centroid: tuple[float, float]
    area: float
    bbox: tuple[int, int, int, int]
    fill: float  # area over (longest row x longest column): square 1, circle pi/4, triangle 1/2
    skew: float  # skewness of the area along y: 0 for circle and square, -0.57 for the upright triangle
    image_size: tuple[int, int]  # (H, W)

    @property
    def cx(self) -> float:
        """Normalised centre of the box, as :class:`ShapeObject` has it (a triangle's centroid sits lower)."""
        return (self.bbox[0] + self.bbox[2]) / 2 / self.image_size[1]

    @property
    def cy(self) -> float:
        return (self.bbox[1] + self.bbox[3]) / 2 / self.image_size[0]

    @property
    def size(self) -> float:
        """The box side as a fraction of the shorter image side."""
        return max(self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]) / min(self.image_size)

    @property
    def kind(self) -> tuple[str, str]:
        return self.colour, self.shape

    def to_object(self) -> ShapeObject:
        return ShapeObject(self.shape, self.colour, self.cx, self.cy, min(1.0, self.size))


def classify_pixels(image: torch.Tensor, max_distance: float = 0.3, min_coverage: float = 0.5) -> np.ndarray:
    """(H, W) int: the palette index of each pixel (order of ``COLOURS``), -1 for background or no colour.

    ``max_distance`` is the largest distance (in [-1, 1] units, RGB) off a colour's background line;
    ``min_coverage`` the smallest share of the colour in the pixel."""
    return _classify(_check_image(image), max_distance, min_coverage)


def _classify(x: np.ndarray, max_distance: float, min_coverage: float) -> np.ndarray:
    h, w = x.shape[1:]
    d = x.reshape(3, -1) - _BACKGROUND[:, None]  # (3, N)
    # alpha >= min_coverage needs |d| >= min_coverage |v|: most pixels (the background) stop here.
    cand = np.nonzero((d**2).sum(axis=0) >= (min_coverage**2) * _NORMS.min())[0]  # (M,)
    d = d[:, cand]  # (3, M)
    dots = _DIRS[:, :1] * d[0] + _DIRS[:, 1:2] * d[1] + _DIRS[:, 2:] * d[2]  # (K, M); no BLAS: it thrashes on busy CPUs
    alpha = dots / _NORMS[:, None]  # (K, M)
    dist2 = (d**2).sum(axis=0) - alpha * dots  # (K, M): squared distance off each line
    best = dist2.argmin(axis=0)  # (M,)
    cols = np.arange(best.size)
    ok = (dist2[best, cols] <= max_distance**2) & (alpha[best, cols] >= min_coverage)
    out = np.full(h * w, -1, dtype=np.int64)
    out[cand[ok]] = best[ok]
    return out.reshape(h, w)


def label_components(classes: np.ndarray) -> np.ndarray:
    """(H, W) int: a component id per pixel (4-connected, same class), -1 where ``classes`` is -1.

    Union-find over the foreground: each round hooks every root to the smallest root it has an edge to, then
    pointer jumping flattens the trees; edges inside one tree are dropped, so rounds shrink quickly."""
    h, w = classes.shape
    fg = classes >= 0
    index = np.full((h, w), -1, dtype=np.int64)
    n = int(fg.sum())
    index[fg] = np.arange(n)
    right = fg[:, :-1] & (classes[:, :-1] == classes[:, 1:])
    down = fg[:-1] & (classes[:-1] == classes[1:])
    u = np.concatenate([index[:, :-1][right], index[:-1][down]])
    v = np.concatenate([index[:, 1:][right], index[1:][down]])
    parent = np.arange(n)
    while u.size:
        pu, pv = parent[u], parent[v]
        keep = pu != pv
        u, v, pu, pv = u[keep], v[keep], pu[keep], pv[keep]
        if not u.size:
            break
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    out = np.full((h, w), -1, dtype=np.int64)
    out[fg] = parent
    return out


def read_objects(
    image: torch.Tensor, min_area_frac: float = 0.002, max_distance: float = 0.3, min_coverage: float = 0.5
) -> list[DetectedObject]:
    """The objects in a (3, H, W) image in [-1, 1], top to bottom then left to right.

    Components of fewer pixels than ``min_area_frac`` of the image (or than 4) are dropped as noise."""
    x = _check_image(image)  # (3, H, W)
    classes = _classify(x, max_distance, min_coverage)  # (H, W)
    h, w = classes.shape
    labels = label_components(classes)
    ys, xs = np.nonzero(labels >= 0)
    if not ys.size:
        return []
    roots, ids = np.unique(labels[ys, xs], return_inverse=True)
    count = np.bincount(ids)
    x0, y0 = np.full(roots.size, w), np.full(roots.size, h)
    x1, y1 = np.zeros(roots.size, dtype=np.int64), np.zeros(roots.size, dtype=np.int64)
    np.minimum.at(x0, ids, xs)
    np.minimum.at(y0, ids, ys)
    np.maximum.at(x1, ids, xs + 1)
    np.maximum.at(y1, ids, ys + 1)
    colour = np.empty(roots.size, dtype=np.int64)
    colour[ids] = classes[ys, xs]  # one class per component
    found = []
    for i in np.nonzero(count >= max(4, min_area_frac * h * w))[0]:
        box = int(x0[i]), int(y0[i]), int(x1[i]), int(y1[i])
        area, centroid, fill, skew = _measure(x, labels, roots[i], colour[i], box)
        shape = min(_PROTOTYPES, key=lambda s: (fill - _PROTOTYPES[s][0]) ** 2 + (skew - _PROTOTYPES[s][1]) ** 2)
        found.append(DetectedObject(list(COLOURS)[colour[i]], shape, centroid, area, box, fill, skew, (h, w)))
    return sorted(found, key=lambda o: (o.bbox[1], o.bbox[0]))


def _measure(
    x: np.ndarray, labels: np.ndarray, label: int, k: int, box: tuple[int, int, int, int]
) -> tuple[float, tuple[float, float], float, float]:
    """(area, centroid, fill, skew) of a component from the coverage of its colour over its pixels and a
    one-pixel ring around them (not over other components' pixels, whatever their colour)."""
    h, w = labels.shape
    x0, y0, x1, y1 = max(0, box[0] - 1), max(0, box[1] - 1), min(w, box[2] + 1), min(h, box[3] + 1)
    lab = labels[y0:y1, x0:x1]  # (h, w)
    own = lab == label
    grown = own.copy()
    grown[1:] |= own[:-1]
    grown[:-1] |= own[1:]
    ring = grown.copy()
    ring[:, 1:] |= grown[:, :-1]
    ring[:, :-1] |= grown[:, 1:]
    d = x[:, y0:y1, x0:x1] - _BACKGROUND[:, None, None]  # (3, h, w)
    alpha = (_DIRS[k, 0] * d[0] + _DIRS[k, 1] * d[1] + _DIRS[k, 2] * d[2]) / _NORMS[k]  # (h, w)
    full = max(float(np.percentile(alpha[own], 75)), 1e-6)  # the object's own full coverage: 1 unless dimmed
    weight = np.where(ring & ((lab < 0) | own), np.clip(alpha / full, 0.0, 1.0), 0.0).astype(np.float64)
    rows, cols = weight.sum(axis=1), weight.sum(axis=0)  # (h,), (w,)
    area = float(rows.sum())
    yy, xx = np.arange(y0, y1) + 0.5, np.arange(x0, x1) + 0.5
    cy, cx = float(rows @ yy / area), float(cols @ xx / area)
    m2, m3 = rows @ (yy - cy) ** 2 / area, rows @ (yy - cy) ** 3 / area
    return area, (cx, cy), area / (rows.max() * cols.max()), float(m3 / max(m2, 1e-9) ** 1.5)


def read_scene(image: torch.Tensor, **kwargs) -> Scene:
    """The objects read back as a scene, to re-answer questions or re-caption (``hydra_x.data.shapes_text``)."""
    return Scene(tuple(o.to_object() for o in read_objects(image, **kwargs)))


def relation(a: DetectedObject | ShapeObject, b: DetectedObject | ShapeObject) -> str:
    """Where ``a`` is relative to ``b`` along the axis of their larger (normalised) offset: one of the
    world's relations ("left", "right", "above", "below")."""
    dx, dy = a.cx - b.cx, a.cy - b.cy
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def read_clip(clip: torch.Tensor, **kwargs) -> list[list[DetectedObject]]:
    """The objects of every frame of a (3, F, H, W) clip (keyword arguments as :func:`read_objects`)."""
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4 or clip.shape[0] != 3:
        raise ValueError(f"expected a (3, F, H, W) clip tensor, got {_describe(clip)}")
    return [read_objects(clip[:, f], **kwargs) for f in range(clip.shape[1])]


def read_motion(clip: torch.Tensor, min_shift: float = 0.05, **kwargs) -> dict[tuple[str, str], str]:
    """(colour, shape) -> "left" | "right" | "up" | "down" for objects found once in the first and the last frame
    and moved by at least ``min_shift`` (normalised) between them, along their larger displacement."""
    frames = read_clip(clip, **kwargs)
    first, last = ({o.kind: o for o in f if sum(p.kind == o.kind for p in f) == 1} for f in (frames[0], frames[-1]))
    motion = {}
    for kind in first.keys() & last.keys():
        dx, dy = last[kind].cx - first[kind].cx, last[kind].cy - first[kind].cy
        if max(abs(dx), abs(dy)) >= min_shift:
            motion[kind] = ("left" if dx < 0 else "right") if abs(dx) >= abs(dy) else ("up" if dy < 0 else "down")
    return motion


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_image(image: torch.Tensor) -> np.ndarray:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image tensor in [-1, 1], got {_describe(image)}")
    if min(image.shape[1:]) < 1:
        raise ValueError(f"expected a non-empty image, got shape {tuple(image.shape)}")
    return image.detach().to("cpu", torch.float32).numpy()
