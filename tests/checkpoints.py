"""Random-initialised models saved as real checkpoints and exported as tests use them."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_checkpoint(path: Path, name: str, model: Any, **extra: Any) -> Path:
    """``model`` (of family ``name``) as ``antiphon train`` would save it, untrained;
    ``extra`` adds the representation's keys (``tokenizer`` or ``grid``) or overrides."""
    import torch

    from antiphon.models.train import CHECKPOINT_FORMAT, versions

    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "family": name,
            "model_config": model.config.to_dict(),
            "model": model.state_dict(),
            "step": 0,
            "train_config": {},
            "metrics": {},
            "data": {"name": "none (random init)"},
            "versions": versions(),
            **extra,
        },
        path,
    )
    return path


def export_verified(ckpt: Path, out: Path) -> tuple[Path, Any]:
    """(exported .onnx with its verification recorded, the graph adapter)."""
    from antiphon.export.pipeline import export_model

    done = export_model(ckpt, out)
    return done.path, done.graph


def tiny_training(corpus: Path, out: Path, steps: int, **kw: Any) -> Any:
    """A TrainConfig for a few seconds of training on one CPU thread (``kw`` overrides)."""
    from antiphon.models.train import TrainConfig

    base = {"batch_size": 4, "block_size": 64, "warmup": 2, "eval_pieces": 1, "threads": 1}
    return TrainConfig(data=str(corpus), out=str(out), steps=steps, device="cpu", **{**base, **kw})
