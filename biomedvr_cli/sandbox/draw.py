"""Vectorised renderer: attribute indices -> microscopy-like RGB images (numpy only).

A whole batch is drawn at once with distance fields on a shared pixel grid: the cell body
is a (possibly wobbly) rotated ellipse, the nucleus a union of up to four small ellipses
(minus a notch for kidney shapes), granules and vacuoles are scattered dots. Nuisances
(position, rotation, lighting, colour jitter, sensor noise) vary per image.

World v2: a few red cells of one fixed size lie around the cell, as in a real smear, so that
"small" and "large" can be read relative to them, and ``render_batch`` takes a per-image
``zoom`` (the pretraining's scale augmentation; downstream tasks are drawn at zoom 1). Real
CLIP-like models are pretrained with random-resized crops on images whose objects appear at
many scales; a model that saw every cell at one magnification with absolute size as a class
cue would treat a reprogramming frame that shrinks the image as a different class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from biomedvr_cli.sandbox.vocabulary import FAMILIES

FAMILY_NAMES = tuple(FAMILIES)
FI = {name: i for i, name in enumerate(FAMILY_NAMES)}
VI = {f: {v: i for i, v in enumerate(vals)} for f, vals in FAMILIES.items()}

IMAGE_SIZE = 96  # pixels a side for pretraining and tasks (geometry below is designed at 64 px and scales)

# Value -> rendering parameters (data, in the order of FAMILIES).
CELL_RADIUS = np.array([10.5, 14.0, 18.0], np.float32)  # small / medium / large (at 64 px, zoom 1)
RED_CELL_RADIUS = 6.5  # the neighbouring red cells: one size everywhere, the ruler for "small" and "large"
RED_CELL_RGB = np.array([0.90, 0.58, 0.60], np.float32)
NUCLEUS_FRACTION = np.array([0.36, 0.58], np.float32)  # small / large nucleus relative to cell
CYTO_RGB = np.array([[0.95, 0.70, 0.80], [0.62, 0.74, 0.95], [0.74, 0.74, 0.76]], np.float32)
GRANULE_RGB = np.array([[0.90, 0.28, 0.16], [0.32, 0.10, 0.45]], np.float32)
NUCLEUS_RGB = np.array([0.36, 0.16, 0.50], np.float32)
BACKGROUND_RGB = np.array([0.96, 0.93, 0.90], np.float32)


def _soft(d: np.ndarray, edge: float = 1.2) -> np.ndarray:
    """Anti-aliased inside-mask from a signed distance-like field (positive inside): a linear ramp."""
    return np.clip(d * (1.0 / edge) + 0.5, 0.0, 1.0)


def _stamp(canvas: np.ndarray, b: np.ndarray, y: np.ndarray, x: np.ndarray, w: np.ndarray, radius: int) -> None:
    """Add square dots of half-size ``radius`` with weights ``w`` at (b, y, x) into canvas [B,H,W]."""
    H, W = canvas.shape[1:]
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            fall = 1.0 if radius == 0 else max(0.35, 1.0 - 0.3 * (abs(dy) + abs(dx)))
            yy = np.clip(y + dy, 0, H - 1)
            xx = np.clip(x + dx, 0, W - 1)
            np.add.at(canvas, (b, yy, xx), w * fall)


@dataclass(frozen=True)
class _Cell:
    """Per-image cell geometry that every layer drawn inside the cell shares ([B] arrays, mask [B,H,W])."""

    R: np.ndarray
    aspect: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    theta: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    mask: np.ndarray


def _scatter_in_cell(
    rng: np.random.Generator, n: np.ndarray, cell: _Cell, spread: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Uniform points in each image's (rotated) cell ellipse; n[i] points for image i."""
    total = int(n.sum())
    b = np.repeat(np.arange(len(n)), n)
    r = np.sqrt(rng.random(total)) * spread
    t = rng.random(total) * 2 * np.pi
    u = r * np.cos(t) * cell.R[b]
    v = r * np.sin(t) * cell.R[b] * cell.aspect[b]
    x = cell.cx[b] + u * cell.cos[b] - v * cell.sin[b]
    y = cell.cy[b] + u * cell.sin[b] + v * cell.cos[b]
    return b, np.round(y).astype(np.int64), np.round(x).astype(np.int64)


def render_batch(
    attrs: np.ndarray, rng: np.random.Generator, size: int = IMAGE_SIZE, zoom: np.ndarray | None = None
) -> np.ndarray:
    """Render float32 images [B, size, size, 3] in [0, 1] for attribute indices [B, F].

    ``attrs[:, FI[family]]`` indexes ``FAMILIES[family]``; -1 marks an absent family
    (granule colour without granules). ``zoom`` [B] scales every object of an image (1 when
    None): the field of view changes, the red cells keep their size relative to the cell.
    """
    # Layers are drawn in a fixed order: each consumes ``rng`` in turn, so reordering them
    # would change every image of a seed (and the shipped model's training data).
    grid = np.arange(size, dtype=np.float32) + 0.5
    X = grid[None, None, :]
    Y = grid[None, :, None]
    zoom = np.ones(attrs.shape[0], np.float32) if zoom is None else np.asarray(zoom, np.float32)
    cell = _cell_body(attrs, rng, size, X, Y, zoom)
    nucleus = _nucleus(attrs[:, FI["nucleus"]], attrs[:, FI["nucleus_size"]], rng, cell, X, Y)
    vac, gran = _vacuoles_and_granules(attrs, rng, cell, size)
    red = _red_cells(rng, cell, size, zoom, X, Y)
    return _compose(attrs, rng, cell.mask, nucleus, vac, gran, red)


def _red_cells(
    rng: np.random.Generator, cell: _Cell, size: int, zoom: np.ndarray, X: np.ndarray, Y: np.ndarray
) -> np.ndarray:
    """Two or three red cells around each cell, not overlapping it: a coverage map [B,H,W] in [0,1].

    The centre of each red cell is paler (central pallor), so the map is lower there.
    """
    B = zoom.shape[0]
    r = (RED_CELL_RADIUS * size / 64.0 * zoom * rng.uniform(0.95, 1.05, B)).astype(np.float32)
    base = rng.uniform(0, 2 * np.pi, B).astype(np.float32)
    out = np.zeros((B, size, size), np.float32)
    for k in range(3):
        angle = base + k * 2 * np.pi / 3 + rng.uniform(-0.4, 0.4, B).astype(np.float32)
        gap = (rng.uniform(0.5, 4.0, B) * size / 64.0 * zoom).astype(np.float32)
        dist = cell.R + r + gap
        cx = cell.cx + dist * np.cos(angle)
        cy = cell.cy + dist * np.sin(angle)
        d = np.sqrt((X - cx[:, None, None]) ** 2 + (Y - cy[:, None, None]) ** 2) / r[:, None, None]
        disc = _soft((1.0 - d) * r[:, None, None]) * (1.0 - 0.45 * np.exp(-((d / 0.45) ** 2)))
        shown = (rng.random(B) < (1.0 if k < 2 else 0.5)).astype(np.float32)[:, None, None]
        out = np.maximum(out, disc * shown)
    return out


def _cell_body(
    attrs: np.ndarray, rng: np.random.Generator, size: int, X: np.ndarray, Y: np.ndarray, zoom: np.ndarray
) -> _Cell:
    """Place, size and rotate each cell; its mask is a (possibly wobbly) rotated ellipse."""
    B = attrs.shape[0]
    s = size / 64.0  # all geometry is designed at 64 px
    R = (CELL_RADIUS[attrs[:, FI["size"]]] * rng.uniform(0.92, 1.08, B) * s * zoom).astype(np.float32)
    shape = attrs[:, FI["shape"]]
    aspect = np.where(shape == 1, rng.uniform(0.55, 0.66, B), rng.uniform(0.9, 1.0, B)).astype(np.float32)
    R = np.where(shape == 1, R * 1.18, R).astype(np.float32)  # oval cells keep roughly the same area
    margin = R + 2 * s
    cx = (size / 2 + rng.uniform(-1, 1, B) * np.maximum(0, size / 2 - margin) * 0.5).astype(np.float32)
    cy = (size / 2 + rng.uniform(-1, 1, B) * np.maximum(0, size / 2 - margin) * 0.5).astype(np.float32)
    theta = rng.uniform(0, 2 * np.pi, B).astype(np.float32)
    cos, sin = np.cos(theta), np.sin(theta)
    dx = X - cx[:, None, None]
    dy = Y - cy[:, None, None]
    u = dx * cos[:, None, None] + dy * sin[:, None, None]
    v = -dx * sin[:, None, None] + dy * cos[:, None, None]
    rn = np.sqrt((u / R[:, None, None]) ** 2 + (v / (R * aspect)[:, None, None]) ** 2)
    # Irregular cells: the boundary radius wobbles with angle (two harmonics, random phase).
    phi = np.arctan2(v, u)
    k1 = rng.integers(3, 6, B).astype(np.float32)[:, None, None]
    amp = np.where(shape == 2, rng.uniform(0.16, 0.24, B), 0.0).astype(np.float32)[:, None, None]
    wobble = 1 + amp * np.sin(k1 * phi + rng.uniform(0, 6.3, B).astype(np.float32)[:, None, None]) + 0.5 * amp * np.sin(
        (k1 + 2) * phi + rng.uniform(0, 6.3, B).astype(np.float32)[:, None, None]
    )
    mask = _soft((wobble - rn) * R[:, None, None])
    return _Cell(R=R, aspect=aspect, cx=cx, cy=cy, theta=theta, cos=cos, sin=sin, mask=mask)


def _lobe_layout(nform: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per nucleus form, up to 4 lobes: offsets [B,4,2] and semi-axes [B,4,2] in units of the
    nucleus radius (along the lobe axis and across it), and which lobes are drawn [B,4]."""
    B = nform.shape[0]
    lobe_off = np.zeros((B, 4, 2), np.float32)
    lobe_r = np.ones((B, 4, 2), np.float32)
    active = np.zeros((B, 4), bool)
    # round
    m = nform == 0
    lobe_r[m, 0] = [1.0, 0.9]
    active[m, 0] = True
    # kidney: one wide ellipse (the notch is cut in _nucleus)
    m = nform == 1
    lobe_r[m, 0] = [1.25, 0.8]
    active[m, 0] = True
    # bilobed: two round lobes side by side
    m = nform == 2
    lobe_off[m, 0] = [-0.72, 0.0]
    lobe_off[m, 1] = [0.72, 0.0]
    lobe_r[m, :2] = [0.56, 0.56]
    active[m, :2] = True
    # multilobed: 3-4 lobes along an arc (drawn for every image, used where multilobed)
    m = nform == 3
    four = rng.random(B) < 0.5
    arc = np.array([[-1.05, 0.3], [-0.36, -0.22], [0.36, -0.22], [1.05, 0.3]], np.float32)
    three = np.array([[-0.85, 0.2], [0.0, -0.3], [0.85, 0.2], [0.0, 0.0]], np.float32)
    lobe_off[m] = np.where(four[m, None, None], arc, three)
    lobe_r[m] = 0.38
    active[m] = True
    active[m & ~four, 3] = False
    return lobe_off, lobe_r, active


def _nucleus(
    nform: np.ndarray, nsize: np.ndarray, rng: np.random.Generator, cell: _Cell, X: np.ndarray, Y: np.ndarray
) -> np.ndarray:
    """Nucleus mask [B,H,W]: union of up to 4 lobes, minus a notch for kidney shapes, inside the cell."""
    B = nform.shape[0]
    R = cell.R
    # Relative to the short axis for oval cells so the nucleus stays inside the cell.
    rnuc = (R * np.minimum(1.0, cell.aspect * 1.3) * NUCLEUS_FRACTION[nsize]
            * rng.uniform(0.92, 1.08, B)).astype(np.float32)
    ncx = cell.cx + rng.uniform(-0.12, 0.12, B).astype(np.float32) * R
    ncy = cell.cy + rng.uniform(-0.12, 0.12, B).astype(np.float32) * R
    # Lobes line up with the cell's long axis (random for round cells, whose axis is random anyway).
    alpha = (cell.theta + rng.uniform(-0.35, 0.35, B)).astype(np.float32)
    ca, sa = np.cos(alpha), np.sin(alpha)
    lobe_off, lobe_r, active = _lobe_layout(nform, rng)
    off_x = (lobe_off[..., 0] * ca[:, None] - lobe_off[..., 1] * sa[:, None]) * rnuc[:, None] + ncx[:, None]
    off_y = (lobe_off[..., 0] * sa[:, None] + lobe_off[..., 1] * ca[:, None]) * rnuc[:, None] + ncy[:, None]
    lx = X[:, None] - off_x[..., None, None]
    ly = Y[:, None] - off_y[..., None, None]
    lu = lx * ca[:, None, None, None] + ly * sa[:, None, None, None]
    lv = -lx * sa[:, None, None, None] + ly * ca[:, None, None, None]
    ra = (lobe_r[..., 0] * rnuc[:, None])[..., None, None]
    rb = (lobe_r[..., 1] * rnuc[:, None])[..., None, None]
    lobes = _soft((1 - np.sqrt((lu / ra) ** 2 + (lv / rb) ** 2)) * np.minimum(ra, rb))
    lobes = np.where(active[..., None, None], lobes, 0.0)
    nucleus = lobes.max(axis=1)
    kid = nform == 1
    if kid.any():  # a round notch bites into one long side of the kidney
        nx = ncx + (-sa) * rnuc * 0.85
        ny = ncy + ca * rnuc * 0.85
        dn = np.sqrt((X - nx[:, None, None]) ** 2 + (Y - ny[:, None, None]) ** 2)
        notch = _soft((rnuc[:, None, None] * 0.7 - dn))
        nucleus = np.where(kid[:, None, None], nucleus * (1 - notch), nucleus)
    nucleus *= cell.mask
    return nucleus


def _vacuoles_and_granules(
    attrs: np.ndarray, rng: np.random.Generator, cell: _Cell, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dot layers [B,H,W] inside the cell: vacuoles (pale round holes) and fine or coarse granules."""
    B = attrs.shape[0]
    s = size / 64.0
    vac = np.zeros((B, size, size), np.float32)
    vac_n = np.where(attrs[:, FI["texture"]] == 1, rng.integers(6, 10, B), 0)
    _scatter_dots(vac, rng, vac_n, cell, 0.85, 0.9, max(1, round(1.6 * s)))
    vac = np.clip(vac, 0, 0.9) * cell.mask

    gran = np.zeros((B, size, size), np.float32)
    gtype = attrs[:, FI["granules"]]
    # granule value -> (count range, dot half-size, weight): many faint fine dots or a few coarse ones
    for g, (lo, hi, rad, w) in {1: (70, 110, 0, 0.55), 2: (14, 22, max(1, round(s)), 0.8)}.items():
        n = np.where(gtype == g, rng.integers(lo, hi, B), 0)
        _scatter_dots(gran, rng, n, cell, 0.9, w, rad)
    gran = np.clip(gran, 0, 0.95) * cell.mask
    return vac, gran


def _scatter_dots(
    canvas: np.ndarray, rng: np.random.Generator, n: np.ndarray, cell: _Cell, spread: float, weight: float, radius: int
) -> None:
    """Stamp n[i] dots of ``weight`` at uniform points of image i's cell into ``canvas``."""
    if n.sum():  # no draw at all when no image has dots, so other layers' draws do not move
        b, y, x = _scatter_in_cell(rng, n, cell, spread)
        _stamp(canvas, b, y, x, np.full(len(b), weight, np.float32), radius)


def _compose(
    attrs: np.ndarray, rng: np.random.Generator, cell: np.ndarray, nucleus: np.ndarray, vac: np.ndarray,
    gran: np.ndarray, red: np.ndarray,
) -> np.ndarray:
    """Paint background, red cells, cytoplasm, vacuoles, granules and nucleus with lighting, colour jitter and noise."""
    B, size = cell.shape[:2]
    light = rng.uniform(0.88, 1.04, (B, 1, 1, 1)).astype(np.float32)
    bg = BACKGROUND_RGB[None, None, None] * light
    bg = bg + (rng.normal(0, 0.012, (B, 1, 1, 3)).astype(np.float32))
    img = np.broadcast_to(bg, (B, size, size, 3)).copy()
    red_col = RED_CELL_RGB[None, None, None] + rng.normal(0, 0.02, (B, 1, 1, 3)).astype(np.float32)
    img += (red_col * light - img) * red[..., None]
    cyto = CYTO_RGB[attrs[:, FI["cytoplasm"]]][:, None, None, :] + rng.normal(0, 0.025, (B, 1, 1, 3)).astype(np.float32)
    img += (cyto * light - img) * cell[..., None]
    img += (bg * 1.05 - img) * vac[..., None]
    gidx = np.clip(attrs[:, FI["granule_colour"]], 0, 1)
    gcol = GRANULE_RGB[gidx][:, None, None, :] + rng.normal(0, 0.03, (B, 1, 1, 3)).astype(np.float32)
    img += (gcol * light - img) * gran[..., None]
    stain = rng.uniform(0.85, 1.15, (B, 1, 1, 1)).astype(np.float32)
    ncol = NUCLEUS_RGB[None, None, None] * stain + rng.normal(0, 0.03, (B, 1, 1, 3)).astype(np.float32)
    # Chromatin: the nucleus is darker at its core than at its rim.
    img += (ncol * light - img) * (nucleus[..., None] * 0.95)
    img += rng.normal(0, 0.012, img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)
