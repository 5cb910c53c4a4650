"""The network: :func:`build_model` -> :class:`PoseNet` (DINOv2 ViT + hand decoder +
kinematic hand layer) and :func:`param_groups` for the optimizer."""

from handpose.model.posenet import PoseNet, build_model, param_groups

__all__ = ["PoseNet", "build_model", "param_groups"]
