"""Finding and loading the checkpoint a command was pointed at (or the newest one)."""

from __future__ import annotations

from pathlib import Path

from .. import pretrained
from ..building import resolve_device, restore_model
from ..checkpoint import find_latest_checkpoint, load_checkpoint
from ..errors import CheckpointError
from . import common


def load_model(model_path: str | None, runs_dir: str, device: str | None):
    """-> (model, spec, train config, checkpoint path, device); says which checkpoint when it chose one."""
    torch_device = resolve_device(device)
    if model_path is None:
        try:
            path = find_latest_checkpoint(runs_dir)
            common.err.print(f"using the newest run's best checkpoint: {path}")
        except CheckpointError:
            path = pretrained.default_path()
            if path is None:
                raise
            common.err.print(f"no trained checkpoint under {runs_dir}/ yet: using the {pretrained.DEFAULT} model that ships with "
                             f"pixelcnn (-m {pretrained.PREFIX}{pretrained.DEFAULT}); train your own with `pixelcnn train`")
    elif pretrained.is_pretrained(model_path):
        path = pretrained.pretrained_path(model_path)
    else:
        path = Path(model_path)
        if path.is_dir():  # a run folder
            candidate = path / "checkpoints" / "best.pt"
            path = candidate if candidate.exists() else path
    checkpoint = load_checkpoint(path, map_location=torch_device)
    model, spec, config = restore_model(checkpoint, torch_device)
    model.eval()
    return model, spec, config, path, torch_device
