"""The knobs that set how hard the synthetic task is, in one place.

The data set exists for a research sweep over dropout and loss weights on a tiny ViT: it
must be hard enough that the tiny preset overfits its 1000 train images (so that
regularisation matters), yet learnable from the image (depth cues: apparent size and bone
width ~ 1/z, brightness falling off with depth, shading by relative depth, occlusion
order, and the known camera ``K``). The values are the ones measured against those goals
(docs/data.md, "How hard the synthetic task is"). Changing a value changes the generated
bytes; the manifest records these values, and :func:`handpose.data.ensure_dataset`
regenerates a cached set whose recorded values differ from the current ones.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

Range = tuple[float, float]
RGB = tuple[float, float, float]
# thumb, index, middle, ring, little
FINGER_RGB: tuple[RGB, ...] = (
    (250, 120, 40),
    (180, 220, 40),
    (40, 190, 170),
    (110, 100, 240),
    (230, 90, 160),
)


@dataclass(frozen=True)
class Difficulty:
    """Scene (pose, camera) and rendering (clutter, occlusion, noise) ranges.

    Lengths in mm, angles in degrees, focal lengths in px for a 128 px image (scaled with
    the image size), pixel noise on the 0-255 scale.
    """

    # pose and shape
    curl: Range = (-0.1, 1.0)  # per-finger curl, fraction of the flexion range
    curl_noise: float = 0.2  # per-joint deviation from the finger's curl (std, fraction)
    betas_std: float = 1.0  # betas ~ N(0, betas_std^2) (hand size: depth from apparent size)
    betas_clip: float = 2.5  # ... clipped to +-this
    tilt_deg: float = 40.0  # out-of-plane rotation around the palm-facing-camera pose
    roll_deg: float = 60.0  # in-plane rotation (0 = fingers up)
    # camera and root position
    depth_mm: Range = (250.0, 1000.0)  # root (wrist) depth (a near hand is kept if it fits)
    focal_px_per_128: Range = (200.0, 250.0)
    principal_jitter_px_per_128: float = 4.0  # principal point offset from the centre
    centre_jitter: float = 0.08  # hand centre offset from the image centre (std, x size)
    margin: float = 0.02  # every joint at least this far inside the image (x size)
    # rendering
    clutter_strokes: tuple[int, int] = (0, 4)  # distractor strokes/blobs per image: [lo, hi)
    clutter_finger_colour_p: float = 0.2  # probability that one has a finger's colour
    occluder_p: float = 0.1  # probability of an occluding blob over the hand
    occluder_radius: Range = (0.06, 0.14)  # x image size
    blur_p: float = 0.2  # probability of a slight blur (the camera's, not augmentation)
    noise_sigma: Range = (1.0, 6.0)
    brightness: Range = (0.9, 1.1)  # whole-image gain (small: it would hide the light falloff)
    # The look (light and appearance) is shared with the pretraining source domain
    # (handpose.pretrain.SOURCE): the tiny backbone trained on one look does not read the
    # fingers under another (docs/data.md, "One look for the source and the target").
    # lighting: a light at the camera (like an IR camera's illuminator) makes parts at depth
    # z mm (light_ref_mm / z) ** light_falloff times as bright: an absolute depth cue
    light_falloff: float = 1.0
    light_ref_mm: float = 500.0
    # appearance
    finger_rgb: tuple[RGB, ...] = FINGER_RGB
    palm_rgb: RGB = (170, 120, 95)
    bone_radius_scale: float = 1.15  # x the per-finger bone radius (render.BONE_RADIUS_MM)
    background_rgb: Range = (0.0, 170.0)  # background ramp colours, per channel

    def as_dict(self) -> dict:
        """JSON-able values (tuples become lists), as recorded in ``manifest.json``."""
        return json.loads(json.dumps(asdict(self)))  # nested tuples -> lists


DEFAULT = Difficulty()
