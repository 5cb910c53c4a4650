"""PoseNet: every arch builds and runs (shapes, finite), the initial mean pose, dropout
control (set_dropout_rate reaches every dropout; SDPA dropout is live), freezing and the
optimizer groups."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from handpose.config import load_config
from handpose.errors import ConfigError
from handpose.losses import compute_losses
from handpose.model import PoseNet, build_model, param_groups
from handpose.model.kinematics import axis_angle_to_matrix, matrix_to_axis_angle
from handpose.model.posenet import REF_FOCAL_PER_PX
from handpose.model.vit import ARCHS, sincos_2d
from tests.helpers import SCRATCH

TINY = ["MODEL.backbone.depth=1", "MODEL.handec.num_layer=2"]


def make_cfg(*overrides: str):
    """The preset with a fresh model (every test here checks one) and ``overrides``."""
    return load_config("stage1-tiny", [*SCRATCH, *overrides])


def camera(b: int, size: int) -> torch.Tensor:
    k = torch.tensor([[2.0 * size, 0.0, size / 2], [0.0, 2.0 * size, size / 2], [0.0, 0.0, 1.0]])
    return k.expand(b, 3, 3).clone()


def fake_batch(b: int, size: int) -> dict:
    g = torch.Generator().manual_seed(1)
    joints = torch.randn(b, 21, 3, generator=g) * 30 + torch.tensor([0.0, 0.0, 500.0])
    return {
        "img": torch.randn(b, 3, size, size, generator=g),
        "K": camera(b, size),
        "joints_cam": joints,
        "joint_valid": torch.ones(b, 21),
        "theta": torch.randn(b, 16, 3, generator=g) * 0.3,
        "betas": torch.randn(b, 10, generator=g),
        "mano_valid": torch.ones(b),
    }


def check_prediction(pred: dict, b: int) -> None:
    shapes = {
        "rotmat": (b, 16, 3, 3),
        "theta": (b, 16, 3),
        "betas": (b, 10),
        "trans": (b, 3),
        "joints_cam": (b, 21, 3),
        "joints_2d": (b, 21, 2),
    }
    assert {k: tuple(v.shape) for k, v in pred.items()} == shapes
    for key, value in pred.items():
        assert torch.isfinite(value).all(), key


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_builds_and_runs(arch):
    """Each preset at depth 1 on 28 px images (2 x 2 patches); context_dim 192 makes the
    decoder project every backbone width except vit_tiny's."""
    torch.manual_seed(0)
    cfg = make_cfg(f"MODEL.backbone.arch={arch}", "MODEL.img_size=28", *TINY)
    model = build_model(cfg).eval()
    assert model.backbone.embed_dim == ARCHS[arch].embed_dim
    assert len(model.backbone.blocks) == 1
    with torch.no_grad():
        check_prediction(model(torch.randn(2, 3, 28, 28), camera(2, 28)), 2)


def test_register_tokens_and_full_depth():
    model = build_model(
        make_cfg(
            "MODEL.backbone.num_register_tokens=4", "MODEL.img_size=28", "MODEL.backbone.depth=null"
        )
    )
    assert len(model.backbone.blocks) == 12  # vit_tiny's own depth when none is given
    tokens = model.backbone(torch.randn(2, 3, 28, 28))
    assert tokens.shape == (2, 1 + 4 + 4, 192)


def test_tiny_posenet_forward_backward():
    torch.manual_seed(0)
    model = build_model(make_cfg()).train()  # the CPU preset as in configs/stage1-tiny.yaml
    batch = fake_batch(4, 112)
    pred = model(batch["img"], batch["K"])
    check_prediction(pred, 4)
    compute_losses(pred, batch, make_cfg().LOSS)["total"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.decoder.queries.grad.abs().sum() > 0


def test_bf16_autocast_keeps_hand_outputs_float32():
    torch.manual_seed(0)
    model = build_model(make_cfg(*TINY)).train()
    batch = fake_batch(2, 112)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pred = model(batch["img"], batch["K"])
        losses = compute_losses(pred, batch, make_cfg().LOSS)
    assert all(v.dtype == torch.float32 for v in pred.values())
    check_prediction(pred, 2)
    losses["total"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_initial_prediction_is_the_mean_pose():
    torch.manual_seed(0)
    model = build_model(make_cfg(*TINY)).eval()
    k = camera(3, 112)
    with torch.no_grad():
        pred = model(torch.randn(3, 3, 112, 112), k)
    eye = torch.eye(3).expand(3, 15, 3, 3)
    assert torch.allclose(pred["rotmat"][:, 1:], eye, atol=0.05)
    assert torch.allclose(
        pred["rotmat"][:, 0], torch.diag(torch.tensor([1.0, -1, -1])), atol=0.05
    )  # fingers up in the image
    assert pred["betas"].abs().max() < 0.05
    # 500 mm at the reference focal length, scaled by this camera's focal length (2 x size)
    z = 500.0 * 2.0 / REF_FOCAL_PER_PX
    assert torch.allclose(pred["trans"], torch.tensor([0.0, 0.0, z]).expand(3, 3), atol=10)
    assert torch.allclose(pred["joints_2d"][:, 0], torch.full((3, 2), 56.0), atol=2)
    assert (pred["joints_2d"][:, 12, 1] < pred["joints_2d"][:, 0, 1]).all()  # tip above wrist
    # theta is rotmat as axis-angle, also for the global rotation near pi
    assert torch.allclose(axis_angle_to_matrix(pred["theta"]), pred["rotmat"], atol=1e-4)
    assert torch.allclose(pred["theta"][:, 0].norm(dim=-1), torch.full((3,), torch.pi), atol=0.1)


def test_theta_conversion_round_trips_up_to_pi():
    """``theta`` comes from kinematics.matrix_to_axis_angle: exact for every angle, pi too."""
    g = torch.Generator().manual_seed(0)
    axis = torch.nn.functional.normalize(torch.randn(400, 3, generator=g), dim=-1)
    angle = torch.cat(
        [
            torch.rand(100, generator=g) * torch.pi,
            torch.full((100,), torch.pi),
            torch.pi - torch.rand(100, generator=g) * 1e-3,
            torch.rand(100, generator=g) * 1e-5,
        ]
    )
    rot = axis_angle_to_matrix(axis * angle[:, None])
    theta = matrix_to_axis_angle(rot)
    assert torch.allclose(axis_angle_to_matrix(theta), rot, atol=1e-5)
    assert torch.allclose(theta.norm(dim=-1), angle, atol=1e-5)
    assert torch.equal(matrix_to_axis_angle(torch.eye(3)), torch.zeros(3))


def decoder_dropouts(model: PoseNet) -> tuple[list[nn.Dropout], list[nn.Dropout]]:
    """-> the applied dropouts, the attention-weight dropouts (whose ``.p`` SDPA reads)."""
    named = list(model.decoder.named_modules())
    return (
        [m for n, m in named if isinstance(m, nn.Dropout) and not n.endswith("attn_drop")],
        [m for n, m in named if isinstance(m, nn.Dropout) and n.endswith("attn_drop")],
    )


def test_set_dropout_rate_reaches_every_dropout():
    model = build_model(make_cfg(*TINY))
    drops, sdpa = decoder_dropouts(model)
    n = len(model.decoder.layers)
    # per layer: self/cross attention outputs + 2 feed-forward; self/cross attention weights;
    # plus the spatial query init's hidden layer
    assert len(drops) == 4 * n + 1 and len(sdpa) == 2 * n
    assert model.decoder.spatial_init.mlp[2] in drops
    assert not [m for m in model.backbone.modules() if isinstance(m, nn.Dropout)]
    for rate in (0.37, 0.0):
        model.set_dropout_rate(rate)
        assert all(m.p == rate for m in drops) and all(m.p == rate for m in sdpa)
    with pytest.raises(ValueError):
        model.set_dropout_rate(1.0)


def run_twice(model: PoseNet, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    model.train(train)
    img, k = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(0)), camera(2, 112)
    with torch.no_grad():
        return model(img, k)["joints_cam"], model(img, k)["joints_cam"]


def test_dropout_rate_changes_training_outputs():
    torch.manual_seed(0)
    model = build_model(make_cfg(*TINY))
    model.set_dropout_rate(0.0)
    a, b = run_twice(model, train=True)
    assert torch.equal(a, b)
    model.set_dropout_rate(0.5)
    a, b = run_twice(model, train=True)
    assert not torch.allclose(a, b)
    a, b = run_twice(model, train=False)  # eval: no dropout at all
    assert torch.equal(a, b)


def test_attention_weight_dropout_goes_through_sdpa():
    torch.manual_seed(0)
    model = build_model(make_cfg(*TINY))
    model.set_dropout_rate(0.0)
    for m in decoder_dropouts(model)[1]:
        m.p = 0.5  # only the attention-weight dropout is on
    a, b = run_twice(model, train=True)
    assert not torch.allclose(a, b)
    a, b = run_twice(model, train=False)
    assert torch.equal(a, b)


def test_freeze_and_param_groups():
    cfg = make_cfg(*TINY, "TRAIN.lr=0.003", "TRAIN.backbone_lr=0.0002")
    model = build_model(cfg)
    groups = {g["name"]: g for g in param_groups(model, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr)}
    assert groups["backbone"]["lr"] == 0.0002 and groups["head"]["lr"] == 0.003
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each exactly once
    assert {id(p) for p in groups["backbone"]["params"]} == {
        id(p) for p in model.backbone.parameters()
    }

    frozen = build_model(make_cfg(*TINY, "MODEL.backbone.freeze=true"))
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    assert [g["name"] for g in param_groups(frozen, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr)] == [
        "head"
    ]
    torch.optim.AdamW(
        param_groups(frozen, cfg.TRAIN.lr, cfg.TRAIN.backbone_lr)
    )  # the groups are valid optimizer input


def test_bad_model_config_is_a_config_error():
    with pytest.raises(ConfigError, match="MODEL.backbone.arch"):
        build_model(make_cfg("MODEL.backbone.arch=vit_huge"))
    with pytest.raises(ConfigError, match="MODEL.num_betas"):
        build_model(make_cfg(*TINY, "MODEL.num_betas=12"))


def test_position_code_starts_as_distinct_sincos_rows():
    model = build_model(make_cfg(*TINY))
    pos = model.backbone.pos_embed[0, 1:]
    assert torch.equal(pos, sincos_2d(model.backbone.grid, 192))
    assert model.backbone.pos_embed[0, 0].abs().max() == 0  # the class token's
    cos = nn.functional.cosine_similarity(pos[:, None], pos[None], dim=-1)
    assert (cos - torch.eye(len(pos))).max() < 0.999  # every patch position is told apart


@pytest.mark.parametrize("spatial_init", [True, False])
def test_spatial_init_makes_queries_depend_on_the_layout(spatial_init):
    torch.manual_seed(0)
    model = build_model(make_cfg(*TINY, f"MODEL.handec.spatial_init={spatial_init}")).eval()
    assert (model.decoder.spatial_init is not None) == spatial_init
    tokens = model.backbone(torch.randn(2, 3, 112, 112))
    shuffled = torch.cat([tokens[:, :1], tokens[:, 1:].flip(1)], dim=1)  # same tokens, moved
    out, moved = model.decoder(tokens), model.decoder(shuffled)
    # learned queries alone only see the tokens as a set (attention is permutation invariant)
    assert torch.allclose(out["pose6d"], moved["pose6d"], atol=1e-5) != spatial_init
    check_prediction(model(torch.randn(2, 3, 112, 112), camera(2, 112)), 2)
