"""The hand decoder ("handec"): query tokens that cross-attend to the image tokens.

18 learned query tokens: one per rotating joint (16, each regresses that joint's 6D
rotation), one for the shape ``betas`` and one for the camera: crop-normalised root
position (u, v) and log-depth. Each of ``num_layer`` pre-norm layers is self-attention
over the queries, cross-attention to the (projected) image tokens and a feed-forward block.
Every dropout rate lives in an ``nn.Dropout`` module: per layer, the attention weights
(self and cross: ``attn_drop``, whose ``.p`` SDPA reads as ``dropout_p``), the attention
outputs (self and cross) and both feed-forward positions, plus the hidden layer of
:class:`SpatialInit`; :meth:`PoseNet.set_dropout_rate` sets them all.

With ``spatial_init`` every query starts as its learned embedding plus a code of the whole
patch grid (:class:`SpatialInit`: tokens reduced to a few channels, flattened, an MLP). At
initialisation cross-attention is near uniform, i.e. a mean over tokens that discards where
things are; the code gives the queries the layout from the first step, and cross-attention
then refines it (measured: docs/internals.md, Model).

The heads start near a mean pose: identity finger rotations, a global orientation with the
fingers up in the image and the palm facing the camera (rotation of pi about x), zero betas,
the root at the image centre and 500 mm deep (a bias of log(500) on the log-depth output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from handpose.errors import ConfigError, check_positive
from handpose.model.kinematics import NUM_ROT
from handpose.schedules import check_dropout_rate

INIT_DEPTH_MM = 500.0
NUM_QUERIES = NUM_ROT + 2  # 16 joints, shape, camera


@dataclass
class HandecCfg:
    """The ``MODEL.handec`` config section (widths in channels)."""

    num_layer: int = 6
    num_head: int = 8
    dim_head: int = 64
    dim_mlp: int = 1024
    dropout: float = 0.1  # the target rate of the progressive dropout (handpose.schedules)
    context_dim: int = 1024
    dim: int = 1024
    # queries start from a code of the whole patch grid (SpatialInit); false: learned only
    spatial_init: bool = True
    checkpoint: str | None = None  # decoder state dict to start from (handpose.pretrain's)


def validate_handec(h: HandecCfg, prefix: str) -> None:
    """The decoder's own rules for its config section ``h`` (at key ``prefix``): positive
    sizes, a dropout rate in [0, 1). ConfigError naming the key."""
    try:
        check_dropout_rate(h.dropout, f"{prefix}.dropout")
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check_positive(h, prefix, "num_layer num_head dim_head dim_mlp dim context_dim")


class Attention(nn.Module):
    """Multi-head attention through SDPA: self-attention, or cross-attention to ``context``.

    Two dropout positions: ``attn_drop`` on the attention weights (never called: SDPA
    applies its ``.p`` as ``dropout_p``, in training only) and ``out_drop`` on the output.
    """

    def __init__(
        self, dim: int, context_dim: int, num_head: int, dim_head: int, dropout: float
    ) -> None:
        super().__init__()
        inner = num_head * dim_head
        self.num_head = num_head
        self.attn_drop = nn.Dropout(dropout)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        self.out_drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x (B, Q, dim), context (B, T, context_dim) or None (self) -> (B, Q, dim)."""
        k, v = self.to_kv(x if context is None else context).chunk(2, dim=-1)
        q, k, v = (
            t.unflatten(-1, (self.num_head, -1)).transpose(1, 2) for t in (self.to_q(x), k, v)
        )
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0
        )
        return self.out_drop(self.to_out(out.transpose(1, 2).flatten(2)))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, dim_mlp: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, dim_mlp),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim_mlp, dim),
            nn.Dropout(dropout),
        )


class DecoderLayer(nn.Module):
    """Pre-norm: x += self_attn(norm(x)); x += cross_attn(norm(x), ctx); x += ff(norm(x))."""

    def __init__(
        self, dim: int, context_dim: int, num_head: int, dim_head: int, dim_mlp: int, dropout: float
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, dim, num_head, dim_head, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, context_dim, num_head, dim_head, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, dim_mlp, dropout)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialInit(nn.Module):
    """Patch tokens (B, N, token_dim) -> (B, dim): LayerNorm, per-token projection to
    ``reduce_dim`` channels, flatten (position-specific weights), MLP with dropout on its
    hidden layer (one of the decoder's dropouts: the flattened code is where a small
    training set is memorised first)."""

    def __init__(
        self,
        token_dim: int,
        num_patches: int,
        dim: int,
        dropout: float,
        reduce_dim: int = 32,
        hidden: int = 512,
    ) -> None:
        super().__init__()
        self.num_patches = num_patches
        self.reduce = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, reduce_dim))
        self.mlp = nn.Sequential(
            nn.Linear(num_patches * reduce_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, dim),
        )

    def forward(self, tokens: Tensor) -> Tensor:
        """tokens (B, T, token_dim) whose last ``num_patches`` are the patch grid."""
        return self.mlp(self.reduce(tokens[:, -self.num_patches :]).flatten(1))


def mean_pose_6d() -> Tensor:
    """(16, 6) initial 6D rotations (first two matrix columns): global Rx(pi), identity rest."""
    pose = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]).repeat(NUM_ROT, 1)
    pose[0] = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    return pose


class HandDecoder(nn.Module):
    """Image tokens (B, T, token_dim) -> raw hand parameters (float32).

    Returns ``pose6d`` (B, 16, 6), ``betas`` (B, num_betas), ``uv`` (B, 2) crop-normalised
    root position and ``depth`` (B,) root depth in mm.
    """

    def __init__(self, cfg: HandecCfg, token_dim: int, num_betas: int, num_patches: int) -> None:
        """``cfg``: ``MODEL.handec``; ``token_dim``: the backbone's width; ``num_patches``:
        its patch-grid size (g * g), used by :class:`SpatialInit` when ``cfg.spatial_init``."""
        super().__init__()
        dim, context_dim, dropout = cfg.dim, cfg.context_dim, cfg.dropout
        self.spatial_init = (
            SpatialInit(token_dim, num_patches, dim, dropout) if cfg.spatial_init else None
        )
        self.context_proj = (
            nn.Identity() if token_dim == context_dim else nn.Linear(token_dim, context_dim)
        )
        self.queries = nn.Parameter(torch.zeros(1, NUM_QUERIES, dim))
        self.layers = nn.ModuleList(
            DecoderLayer(dim, context_dim, cfg.num_head, cfg.dim_head, cfg.dim_mlp, dropout)
            for _ in range(cfg.num_layer)
        )
        self.norm = nn.LayerNorm(dim)
        self.pose_head = nn.Linear(dim, 6)
        self.shape_head = nn.Linear(dim, num_betas)
        self.cam_head = nn.Linear(dim, 3)
        self.register_buffer("pose_init", mean_pose_6d(), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.queries, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for head in (self.pose_head, self.shape_head, self.cam_head):  # start at the mean
            nn.init.xavier_uniform_(head.weight, gain=0.01)
        with torch.no_grad():
            self.cam_head.bias[2] = math.log(INIT_DEPTH_MM)

    def forward(self, tokens: Tensor) -> dict[str, Tensor]:
        context = self.context_proj(tokens)
        x = self.queries.expand(tokens.shape[0], -1, -1)
        if self.spatial_init is not None:
            x = x + self.spatial_init(tokens)[:, None]
        for layer in self.layers:
            x = layer(x, context)
        with torch.autocast(x.device.type, enabled=False):  # heads in float32 (depth!)
            x = self.norm(x.float())
            cam = self.cam_head(x[:, NUM_ROT + 1])
            return {
                "pose6d": self.pose_head(x[:, :NUM_ROT]) + self.pose_init,
                "betas": self.shape_head(x[:, NUM_ROT]),
                "uv": cam[:, :2],
                "depth": cam[:, 2].exp(),
            }
