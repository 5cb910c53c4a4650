"""A differentiable hand kinematic model (no licensed files): 16 rotating joints + 5 tips.

Joint order (FreiHAND / OpenPose): 0 wrist; thumb 1-4; index 5-8; middle 9-12; ring 13-16;
little 17-20 (per finger: three rotating joints, then the tip).

Pose ``theta`` is (B, 16, 3) axis-angle in radians, MANO-style: index 0 is the global
orientation at the wrist, index ``1 + 3 f + k`` is joint ``k`` (0..2) of finger ``f``
(0 thumb .. 4 little), rotating everything distal to it. Rotations are expressed in the
rest-pose frame (as MANO does). Shape ``betas`` (B, 10) scales bone lengths through a
fixed linear basis. Output joints are in millimetres, wrist at the origin; add the root
translation to place them in camera space.

Rest pose (right hand): fingers along +y, palm in the x-y plane facing +z, thumb on the
+x side, back of the hand towards -z. Positive flexion curls a finger towards +z (the palm).

The seam for a MANO layer: anything with ``forward(rotmat, betas) -> (B, 21, 3)`` mm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_JOINTS = 21
NUM_ROT = 16
NUM_BETAS = 10
FINGERS = ("thumb", "index", "middle", "ring", "little")
PARENTS = (-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19)
TIPS = (4, 8, 12, 16, 20)
# theta index -> joint index it rotates
ROT_JOINTS = (0, 1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)

# Rest-pose geometry of an average adult right hand (mm).
_BASE = {  # finger base joint (thumb CMC / finger MCP) relative to the wrist
    "thumb": (22.0, 22.0, 5.0),
    "index": (24.0, 88.0, 0.0),
    "middle": (2.0, 92.0, 0.0),
    "ring": (-18.0, 86.0, 0.0),
    "little": (-35.0, 76.0, 0.0),
}
_BONES = {  # lengths of the three bones distal to the base joint
    "thumb": (38.0, 32.0, 28.0),
    "index": (42.0, 25.0, 21.0),
    "middle": (46.0, 28.0, 22.0),
    "ring": (43.0, 27.0, 22.0),
    "little": (34.0, 20.0, 19.0),
}
_DIR_DEG = {"thumb": 45.0, "index": 6.0, "middle": 0.0, "ring": -6.0, "little": -12.0}

# Joint limits in degrees: (flexion min, max) per joint k=0..2 and abduction at k=0.
FLEX_LIMITS = {
    "thumb": ((-15.0, 45.0), (-10.0, 60.0), (-10.0, 80.0)),
    "index": ((-20.0, 90.0), (0.0, 110.0), (0.0, 80.0)),
    "middle": ((-20.0, 90.0), (0.0, 110.0), (0.0, 80.0)),
    "ring": ((-20.0, 90.0), (0.0, 110.0), (0.0, 80.0)),
    "little": ((-20.0, 90.0), (0.0, 110.0), (0.0, 80.0)),
}
ABD_LIMITS = {
    "thumb": (-30.0, 30.0),
    "index": (-20.0, 20.0),
    "middle": (-15.0, 15.0),
    "ring": (-15.0, 15.0),
    "little": (-20.0, 25.0),
}


def finger_axes() -> tuple[Tensor, Tensor]:
    """Rest direction (5, 3) and flexion axis (5, 3) of each finger (unit vectors)."""
    dirs, axes = [], []
    for f in FINGERS:
        a = math.radians(_DIR_DEG[f])
        d = torch.tensor([math.sin(a), math.cos(a), 0.0])
        if f == "thumb":  # the thumb points partly out of the palm plane
            d = F.normalize(d + torch.tensor([0.0, 0.0, 0.35]), dim=0)
        axis = F.normalize(torch.linalg.cross(d, torch.tensor([0.0, 0.0, 1.0])), dim=0)
        dirs.append(d)
        axes.append(axis)
    return torch.stack(dirs), torch.stack(axes)


def _shape_basis() -> Tensor:
    """(10, 20) relative bone-length change per unit beta for the 20 bones (joint 1..20)."""
    basis = torch.zeros(NUM_BETAS, NUM_JOINTS - 1)
    basis[0] = 0.08  # overall size
    for f in range(5):
        bones = [4 * f + k for k in range(4)]  # bone into joint 1+4f+k (k=0 is the palm bone)
        basis[1, bones[0]] = 0.05  # palm length
        basis[2 + f, bones[1:]] = 0.06  # finger f length
        basis[7, bones[1]] = 0.04  # proximal vs distal proportion
        basis[7, bones[3]] = -0.04
    basis[8, 0:4] = 0.05  # thumb
    basis[9, [b for f in range(1, 5) for b in (4 * f,)]] = 0.03  # palm width (finger bases)
    return basis


def rest_offsets() -> Tensor:
    """(21, 3) offset of each joint from its parent in the rest pose, mm (row 0 = 0)."""
    dirs, _ = finger_axes()
    off = torch.zeros(NUM_JOINTS, 3)
    for f, name in enumerate(FINGERS):
        off[1 + 4 * f] = torch.tensor(_BASE[name])
        for k in range(3):
            off[2 + 4 * f + k] = dirs[f] * _BONES[name][k]
    return off


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """(..., 3) axis-angle (rad) -> (..., 3, 3) rotation matrices (Rodrigues, grad-safe at 0)."""
    angle = torch.sqrt((aa * aa).sum(-1, keepdim=True) + 1e-12)
    axis = aa / angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(aa.shape[:-1] + (3, 3))
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + s * k + (1 - c) * (k @ k)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle (rad), angle in [0, pi].

    The angle is ``atan2(sin, cos)`` (accurate everywhere); the axis comes from the skew part
    for angles up to 90 degrees and, beyond (where the skew part vanishes towards pi), from the
    symmetric part ``(R + R^T) / 2 - cos I = (1 - cos) a a^T``, signed by the skew part.
    No data-dependent branches (no host sync).
    """
    vec = torch.stack(
        [
            rot[..., 2, 1] - rot[..., 1, 2],
            rot[..., 0, 2] - rot[..., 2, 0],
            rot[..., 1, 0] - rot[..., 0, 1],
        ],
        -1,
    )  # 2 sin(angle) axis
    cos = (rot.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2
    sin = torch.linalg.vector_norm(vec, dim=-1) / 2
    angle = torch.atan2(sin, cos)
    small = sin < 1e-6
    ratio = torch.where(small, torch.ones_like(sin), angle / torch.where(small, 1.0, sin))
    aa = vec / 2 * ratio[..., None]  # angle up to 90 degrees
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    outer = (rot + rot.transpose(-1, -2)) / 2 - cos[..., None, None] * eye  # (1 - cos) a a^T
    i = outer.diagonal(dim1=-2, dim2=-1).argmax(-1, keepdim=True)
    col = torch.gather(outer, -1, i[..., None].expand(outer.shape[:-1] + (1,))).squeeze(-1)
    axis = F.normalize(col, dim=-1)
    axis = torch.where((axis * vec).sum(-1, keepdim=True) < 0, -axis, axis)
    return torch.where((cos < 0)[..., None], axis * angle[..., None], aa)


def rotation_6d_to_matrix(x: Tensor) -> Tensor:
    """(..., 6) continuous 6D rotation (Zhou et al.) -> (..., 3, 3) (columns b1, b2, b3)."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def angles_to_theta(flex_deg: Tensor, abd_deg: Tensor, global_aa: Tensor) -> Tensor:
    """Anatomical angles -> ``theta`` (B, 16, 3) axis-angle.

    flex_deg: (B, 5, 3) flexion of each finger joint, degrees; abd_deg: (B, 5) abduction of
    the base joint, degrees (about the palm normal); global_aa: (B, 3) axis-angle.
    """
    _, axes = finger_axes()
    axes = axes.to(flex_deg)
    flex = torch.deg2rad(flex_deg)[..., None] * axes[None, :, None, :]  # (B, 5, 3, 3)
    rot = axis_angle_to_matrix(flex)
    z = torch.zeros_like(abd_deg)[..., None].expand(-1, -1, 3).clone()
    z[..., 2] = torch.deg2rad(abd_deg)
    rot_base = axis_angle_to_matrix(z) @ rot[:, :, 0]
    rot = torch.cat([rot_base[:, :, None], rot[:, :, 1:]], dim=2)  # (B, 5, 3, 3, 3)
    finger_aa = matrix_to_axis_angle(rot).reshape(flex_deg.shape[0], 15, 3)
    return torch.cat([global_aa[:, None], finger_aa], dim=1)


class HandKinematics(nn.Module):
    """Forward kinematics: rotations (B, 16, 3, 3) + betas (B, 10) -> joints (B, 21, 3) mm.

    The wrist is at the origin; differentiable in both inputs.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("offsets", rest_offsets(), persistent=False)
        self.register_buffer("shape_basis", _shape_basis(), persistent=False)

    def bone_offsets(self, betas: Tensor) -> Tensor:
        """(B, 21, 3) parent->joint offsets in the rest pose, shaped by ``betas``, mm."""
        scale = 1.0 + betas @ self.shape_basis  # (B, 20)
        scale = scale.clamp(min=0.5)
        off = self.offsets[None].expand(betas.shape[0], -1, -1)
        return torch.cat([off[:, :1], off[:, 1:] * scale[..., None]], dim=1)

    def forward(self, rotmat: Tensor, betas: Tensor) -> Tensor:
        off = self.bone_offsets(betas)
        glob_rot: list[Tensor | None] = [None] * NUM_JOINTS
        pos: list[Tensor | None] = [None] * NUM_JOINTS
        pos[0] = torch.zeros_like(off[:, 0])
        glob_rot[0] = rotmat[:, 0]
        rot_of = {j: i for i, j in enumerate(ROT_JOINTS)}
        for j in range(1, NUM_JOINTS):
            p = PARENTS[j]
            pos[j] = pos[p] + (glob_rot[p] @ off[:, j, :, None]).squeeze(-1)
            if j in rot_of:
                glob_rot[j] = glob_rot[p] @ rotmat[:, rot_of[j]]
        return torch.stack(pos, dim=1)

    def forward_theta(self, theta: Tensor, betas: Tensor) -> Tensor:
        """Same as ``forward`` with axis-angle ``theta`` (B, 16, 3)."""
        return self(axis_angle_to_matrix(theta), betas)


# MODEL.hand_model -> its layer; the names are also the shard tag ``hand_model`` whose
# ``theta``/``betas`` the loader trusts (handpose.data.decode.parse_annotation)
HAND_MODELS = {"kinematic": HandKinematics}


def build_hand_model(name: str = "kinematic") -> nn.Module:
    """The hand layer named ``name`` (one of :data:`HAND_MODELS`; checked by the config)."""
    return HAND_MODELS[name]()
