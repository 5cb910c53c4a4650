"""Start the hand decoder from saved weights (``MODEL.handec.checkpoint``), strictly.

The file is a plain state dict of the decoder's tensors (any float dtype; ``handpose.pretrain``
writes fp16), e.g. the decoder that was pretrained with the shipped tiny backbone. A relative
path that does not exist from the working directory is looked up in the repository root, as
for the backbone. Every problem is a one-line :class:`~handpose.errors.UserError` naming the
path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from handpose.errors import UserError, first_line
from handpose.model.dinov2_io import check_state_dict, resolve_checkpoint_path


def load_decoder_checkpoint(decoder: nn.Module, path: str | Path) -> None:
    """Load the state dict at ``path`` into ``decoder``; :class:`UserError` on any mismatch."""
    try:
        sd = torch.load(resolve_checkpoint_path(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types: all mean unreadable
        raise UserError(f"unreadable decoder checkpoint {path}: {first_line(e)}") from None
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise UserError(f"unreadable decoder checkpoint {path}: not a state dict of tensors")
    check_state_dict(
        decoder.state_dict(), sd, f"decoder checkpoint {path} does not match MODEL.handec"
    )
    decoder.load_state_dict(sd, strict=True)
