"""Render a hand (21 joints in camera mm + intrinsics) into an RGB image with numpy/Pillow.

Bones are thick lines whose width is the bone's diameter projected at its depth (so width
scales with 1/z), in per-finger colours lit by a light at the camera (brightness falls off
with depth) and shaded by depth within the hand; joints are rounded caps;
the palm is a filled polygon. Parts are drawn far to near (painter's algorithm), so nearer
parts occlude farther ones. The background is a colour ramp cluttered with distractor
strokes and blobs in finger-like colours; an occluding blob, blur, lighting and noise vary
per image. Ranges come from :class:`handpose.data.difficulty.Difficulty`. Drawing happens
at ``SUPERSAMPLE`` times the size, then is downsampled (anti-aliasing).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from handpose.data.difficulty import DEFAULT, Difficulty

SUPERSAMPLE = 2
BONE_RADIUS_MM = np.array([10.0, 8.5, 8.5, 8.0, 7.0])  # per finger
PALM_IDX = (0, 1, 5, 9, 13, 17)  # wrist and the five finger bases

RGB = tuple[int, int, int]


def project(joints_mm: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera mm -> (N, 2) px through the (3, 3) intrinsics ``K``."""
    uvw = joints_mm @ K.T
    return uvw[:, :2] / uvw[:, 2:3]


def _rgb(colour: np.ndarray) -> RGB:
    r, g, b = (int(c) for c in np.clip(colour, 0, 255))
    return r, g, b


def _shade(rgb: np.ndarray, depth: float, z_near: float, z_far: float, d: Difficulty) -> RGB:
    """``rgb`` lit by a light at the camera, ``(d.light_ref_mm / depth) ** d.light_falloff``
    (absolute depth), times 1.1 for the hand's nearest part down to 0.85 for its farthest
    (relative depth, linear between ``z_near`` and ``z_far`` mm), times 0.9."""
    t = 0.0 if z_far <= z_near else (depth - z_near) / (z_far - z_near)
    light = (d.light_ref_mm / max(depth, 1.0)) ** d.light_falloff
    return _rgb(rgb * (1.1 - 0.25 * t) * light * 0.9)


def _background(rng: np.random.Generator, draw_size: int, d: Difficulty) -> Image.Image:
    """A random two-colour ramp with ``d.clutter_strokes`` distractor lines and blobs."""
    c0, c1 = rng.uniform(*d.background_rgb, 3), rng.uniform(*d.background_rgb, 3)
    ramp = np.linspace(0, 1, draw_size)[:, None, None]
    if rng.random() < 0.5:
        ramp = ramp.transpose(1, 0, 2)
    bg = np.broadcast_to(c0 * (1 - ramp) + c1 * ramp, (draw_size, draw_size, 3))
    img = Image.fromarray(bg.astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(*d.clutter_strokes))):
        finger_like = rng.random() < d.clutter_finger_colour_p
        if finger_like:
            colour = np.array(d.finger_rgb[rng.integers(5)], float)
        else:
            colour = rng.uniform(0, 255, 3)
        colour = _rgb(colour * rng.uniform(0.5, 1.1))
        p = rng.uniform(0, draw_size, 4)
        width = int(rng.uniform(0.02, 0.09) * draw_size)
        if rng.random() < 0.7:
            draw.line([tuple(p[:2]), tuple(p[2:])], fill=colour, width=max(width, 1))
        else:
            box = [min(p[0], p[2]), min(p[1], p[3]), max(p[0], p[2]), max(p[1], p[3])]
            draw.ellipse(box, fill=colour)
    return img


def render_hand(
    joints_mm: np.ndarray,
    K: np.ndarray,
    size: int,
    rng: np.random.Generator,
    difficulty: Difficulty = DEFAULT,
) -> np.ndarray:
    """-> (size, size, 3) uint8 RGB image of the hand ``joints_mm`` (21, 3) seen through K.

    ``K`` (3, 3) maps camera mm to pixels of the ``size`` x ``size`` image.
    """
    d, s = difficulty, SUPERSAMPLE
    img = _background(rng, size * s, d)
    draw = ImageDraw.Draw(img)
    uv = project(joints_mm, K) * s
    z = joints_mm[:, 2]
    z_near, z_far = float(z.min()), float(z.max())
    focal = float(K[0, 0]) * s
    skin = np.array(d.palm_rgb, float) * rng.uniform(0.7, 1.1, 3)
    finger_rgb = np.array(d.finger_rgb, float)
    items: list[tuple[float, tuple[int, int, int] | None]] = [
        (float(z[list(PALM_IDX)].mean()), None)  # the palm
    ]
    for f in range(5):
        chain = [1 + 4 * f + k for k in range(4)]
        for a, b in zip(chain[:-1], chain[1:], strict=True):
            items.append((float((z[a] + z[b]) / 2), (f, a, b)))
    for depth, bone in sorted(items, key=lambda it: -it[0]):  # far -> near
        if bone is None:
            poly = [tuple(uv[i]) for i in PALM_IDX]
            draw.polygon(poly, fill=_shade(skin, depth, z_near, z_far, d))
            continue
        f, a, b = bone
        radius = BONE_RADIUS_MM[f] * d.bone_radius_scale
        width = max(2, int(2 * radius * focal / max(depth, 1.0)))
        draw.line(
            [tuple(uv[a]), tuple(uv[b])],
            fill=_shade(finger_rgb[f], depth, z_near, z_far, d),
            width=width,
        )
        for j in (a, b):  # rounded joints, slightly darker
            r = 0.55 * width
            draw.ellipse(
                [uv[j][0] - r, uv[j][1] - r, uv[j][0] + r, uv[j][1] + r],
                fill=_shade(finger_rgb[f] * 0.8, float(z[j]), z_near, z_far, d),
            )
    if rng.random() < d.occluder_p:
        c = uv[rng.integers(21)] + rng.normal(0, 6 * s, 2)
        r = rng.uniform(*d.occluder_radius) * size * s
        draw.ellipse(
            [c[0] - r, c[1] - r * 0.7, c[0] + r, c[1] + r * 0.7], fill=_rgb(rng.uniform(0, 255, 3))
        )
    img = img.resize((size, size), Image.Resampling.BILINEAR)
    if rng.random() < d.blur_p:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(*d.brightness)
    arr += rng.normal(0, rng.uniform(*d.noise_sigma), arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)
