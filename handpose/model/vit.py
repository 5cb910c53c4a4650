"""A DINOv2 Vision Transformer in plain torch whose ``state_dict`` matches facebookresearch/dinov2.

Keys: ``cls_token`` (1, 1, D), ``pos_embed`` (1, 1 + g*g, D), ``register_tokens`` (1, R, D)
when R > 0, ``mask_token`` (1, D), ``patch_embed.proj``, ``blocks.N.{norm1, attn.qkv,
attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}`` (SwiGLU: ``mlp.w12``, ``mlp.w3``)
and ``norm``. ``mask_token`` is a buffer: masked-image training is not done here, it only
exists so official checkpoints load strictly.

``pos_embed`` is stored for this model's patch grid g = img_size // patch_size; a checkpoint
made for another grid (DINOv2 pretraining: 518 px, 37 x 37) is resampled bicubically when it
is loaded (:mod:`handpose.model.dinov2_io`), not at every forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from handpose.errors import check, check_positive


@dataclass(frozen=True)
class ViTArch:
    embed_dim: int
    depth: int
    num_heads: int
    ffn: str = "mlp"  # mlp (GELU) | swiglu


ARCHS = {
    "vit_tiny": ViTArch(192, 12, 3),
    "vit_small": ViTArch(384, 12, 6),
    "vit_base": ViTArch(768, 12, 12),
    "vit_large": ViTArch(1024, 24, 16),
    "vit_giant2": ViTArch(1536, 40, 24, "swiglu"),
}


@dataclass
class BackboneCfg:
    """The ``MODEL.backbone`` config section."""

    arch: str = "vit_large"  # a key of ARCHS
    depth: int | None = None  # number of blocks (default: the arch's); small for CPU presets
    patch_size: int = 14  # px
    num_register_tokens: int = 0
    checkpoint: str | None = None  # DINOv2 .pth or Hugging Face dinov2-* folder
    freeze: bool = False


def validate_backbone(bb: BackboneCfg, prefix: str) -> None:
    """The backbone's own rules for its config section ``bb`` (at key ``prefix``): positive
    patch size, a known arch, depth in 1..the arch's. ConfigError naming the key."""
    check_positive(bb, prefix, "patch_size")
    check_positive(bb, prefix, "num_register_tokens", strict=False)
    check(bb.arch in ARCHS, f"{prefix}.arch", bb.arch, f"one of {', '.join(ARCHS)}")
    max_depth = ARCHS[bb.arch].depth
    check(
        bb.depth is None or 1 <= bb.depth <= max_depth,
        f"{prefix}.depth",
        bb.depth,
        f"in 1..{max_depth} ({bb.arch}) or null",
    )


def sincos_2d(grid: int, dim: int) -> Tensor:
    """(grid * grid, dim) 2D sin-cos position code, row by row: sin/cos of x then of y at
    dim // 4 frequencies each (dim must be a multiple of 4)."""
    y, x = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32),
        torch.arange(grid, dtype=torch.float32),
        indexing="ij",
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4) / (dim // 4))
    return torch.cat(
        [f(c.flatten()[:, None] * omega[None]) for c in (x, y) for f in (torch.sin, torch.cos)],
        dim=1,
    )


class PatchEmbed(nn.Module):
    """(B, 3, H, W) -> (B, H/p * W/p, D) non-overlapping patch projection."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (DINOv2 layout), SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwiGLU(nn.Module):
    """DINOv2's ``SwiGLUFFNFused``: hidden width 2/3 of ``hidden``, rounded up to 8."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    """Pre-norm transformer block with layer scale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, ffn: str, layer_scale_init: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim, layer_scale_init)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLU(dim, 4 * dim) if ffn == "swiglu" else Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim, layer_scale_init)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """DINOv2 ViT: image (B, 3, S, S) -> final-normed tokens (B, 1 + R + g*g, D).

    Token order: class token, R register tokens, then the g x g patches row by row.
    """

    def __init__(
        self,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        ffn: str = "mlp",
        num_register_tokens: int = 0,
        layer_scale_init: float = 1e-5,
    ) -> None:
        super().__init__()
        self.img_size, self.patch_size, self.embed_dim = img_size, patch_size, embed_dim
        self.grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, embed_dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim))
            if num_register_tokens
            else None
        )
        self.register_buffer("mask_token", torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, ffn, layer_scale_init) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        """DINOv2's initialisation (used when no checkpoint is loaded), except ``pos_embed``:
        fixed 2D sin-cos values (as MAE), still learned. DINOv2's N(0, 0.02) start leaves the
        position nearly invisible next to the patch embedding, which slows training from
        scratch (measured: docs/internals.md, Model)."""
        with torch.no_grad():
            self.pos_embed.zero_()
            self.pos_embed[0, 1:] = sincos_2d(self.grid, self.embed_dim)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.register_tokens is not None:
            nn.init.normal_(self.register_tokens, std=1e-6)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, img: Tensor) -> Tensor:
        if img.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"expected {self.img_size} px images, got {tuple(img.shape)}")
        x = self.patch_embed(img)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        if self.register_tokens is not None:
            regs = self.register_tokens.expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :1], regs, x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


def build_backbone(bb: BackboneCfg, img_size: int) -> VisionTransformer:
    """``MODEL.backbone`` (validated by :func:`validate_backbone`) -> a randomly
    initialised ViT for ``img_size`` px images (``depth`` null: the arch's)."""
    arch = ARCHS[bb.arch]
    depth = arch.depth if bb.depth is None else bb.depth
    return VisionTransformer(
        img_size,
        bb.patch_size,
        arch.embed_dim,
        depth,
        arch.num_heads,
        arch.ffn,
        bb.num_register_tokens,
    )
