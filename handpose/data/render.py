"""Render a hand (21 joints in camera mm + intrinsics) into an RGB image with numpy/Pillow.

Bones are drawn as thick lines whose width follows the projected size (mm -> px at the
bone's depth), per-finger colours shaded by depth, farthest first so nearer parts occlude
farther ones; the palm is a filled polygon. The background is cluttered with distractor
strokes in finger-like colours; lighting, occluders and noise vary per image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Difficulty knobs (one place): what makes the task hard enough for regularisation to matter.
CLUTTER_STROKES = (2, 8)  # distractor strokes per image (min, max)
OCCLUDER_P = 0.25  # probability of a random occluding blob over the hand
NOISE_SIGMA = (2.0, 12.0)  # Gaussian pixel noise, 0-255 scale
BRIGHTNESS = (0.6, 1.35)
SUPERSAMPLE = 2

FINGER_RGB = np.array([  # thumb, index, middle, ring, little
    [230, 80, 60], [240, 200, 40], [70, 190, 80], [60, 130, 230], [190, 80, 210]], float)
PALM_RGB = np.array([225, 180, 150], float)
BONE_RADIUS_MM = np.array([10.0, 8.5, 8.5, 8.0, 7.0])  # per finger
PALM_IDX = (0, 1, 5, 9, 13, 17)


def project(joints_mm: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(21, 3) camera mm -> (21, 2) px."""
    uvw = joints_mm @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def _shade(rgb: np.ndarray, depth: float, z_near: float, z_far: float) -> tuple:
    t = 0.0 if z_far <= z_near else (depth - z_near) / (z_far - z_near)
    return tuple(int(c) for c in np.clip(rgb * (1.15 - 0.55 * t), 0, 255))


def _background(rng: np.random.Generator, size: int, draw_size: int) -> Image.Image:
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, draw_size)[:, None, None]
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    bg = c0 * (1 - ramp) + c1 * ramp
    bg = np.broadcast_to(bg, (draw_size, draw_size, 3)).copy()
    img = Image.fromarray(bg.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(*CLUTTER_STROKES))):
        colour = FINGER_RGB[rng.integers(5)] if rng.random() < 0.5 else rng.uniform(0, 255, 3)
        colour = tuple(int(c) for c in np.clip(colour * rng.uniform(0.5, 1.1), 0, 255))
        p = rng.uniform(0, draw_size, 4)
        width = int(rng.uniform(0.02, 0.09) * draw_size)
        if rng.random() < 0.7:
            draw.line([tuple(p[:2]), tuple(p[2:])], fill=colour, width=max(width, 1))
        else:
            box = [min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3])]
            draw.ellipse(box, fill=colour)
    return img


def render_hand(joints_mm: np.ndarray, K: np.ndarray, size: int,
                rng: np.random.Generator) -> np.ndarray:
    """-> (size, size, 3) uint8 RGB image of the hand ``joints_mm`` (21, 3) seen through K."""
    s = SUPERSAMPLE
    img = _background(rng, size, size * s)
    draw = ImageDraw.Draw(img)
    uv = project(joints_mm, K) * s
    z = joints_mm[:, 2]
    z_near, z_far = float(z.min()), float(z.max())
    focal = float(K[0, 0]) * s
    skin = PALM_RGB * rng.uniform(0.7, 1.1, 3)
    palm_depth = float(z[list(PALM_IDX)].mean())
    # draw order: palm and bones sorted far -> near (painter's algorithm)
    items = [(palm_depth, "palm", None)]
    for f in range(5):
        chain = [1 + 4 * f + k for k in range(4)]
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            items.append((float((z[a] + z[b]) / 2), "bone", (f, a, b)))
    for depth, kind, data in sorted(items, key=lambda it: -it[0]):
        if kind == "palm":
            poly = [tuple(uv[i]) for i in PALM_IDX]
            draw.polygon(poly, fill=_shade(skin, depth, z_near, z_far))
            continue
        f, a, b = data
        width = max(2, int(2 * BONE_RADIUS_MM[f] * focal / max(depth, 1.0)))
        colour = _shade(FINGER_RGB[f], depth, z_near, z_far)
        draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour, width=width)
        for j in (a, b):  # rounded joints, slightly darker
            r = 0.55 * width
            draw.ellipse([uv[j][0] - r, uv[j][1] - r, uv[j][0] + r, uv[j][1] + r],
                         fill=_shade(FINGER_RGB[f] * 0.8, float(z[j]), z_near, z_far))
    if rng.random() < OCCLUDER_P:
        c = uv[rng.integers(21)] + rng.normal(0, 6 * s, 2)
        r = rng.uniform(0.06, 0.14) * size * s
        draw.ellipse([c[0] - r, c[1] - r * 0.7, c[0] + r, c[1] + r * 0.7],
                     fill=tuple(int(x) for x in rng.uniform(0, 255, 3)))
    img = img.resize((size, size), Image.BILINEAR)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(*BRIGHTNESS)
    arr += rng.normal(0, rng.uniform(*NOISE_SIGMA), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)
