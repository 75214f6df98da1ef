"""The adversarial trainers' log: D and G losses and the diversity of generated samples over
steps, beside the same diversity of the training data, written by ``antiphon train`` as
``OUT/gan-log.json`` and the plot ``OUT/gan-training.png``.

A GAN's losses alone do not say whether it works (both can sit still while G plays one bar
forever), so every logged point also carries the diversity of a fixed-seed batch of samples
(``models.diversity``) and the run keeps the data's figure as the line to reach.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from antiphon.atomic import write_text
from antiphon.models.diversity import Diversity


@dataclass
class GanLog:
    data_diversity: Diversity | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self,
        step: int,
        d_loss: float | None,
        g_loss: float | None,
        samples: Diversity | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"step": step, "d_loss": d_loss, "g_loss": g_loss, **extra}
        if samples is not None:
            row["distinct_bars"] = samples.distinct_bars
            row["mean_distance"] = samples.mean_distance
        self.rows.append(row)
        return row

    def to_dict(self) -> dict:
        data = self.data_diversity.to_dict() if self.data_diversity else None
        return {"data_diversity": data, "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict | None) -> GanLog:
        if not d:
            return cls()
        data = Diversity(**d["data_diversity"]) if d.get("data_diversity") else None
        return cls(data, list(d.get("rows", [])))

    def write(self, folder: Path, *, plot: bool = True) -> list[Path]:
        """The log as JSON and, where matplotlib is installed, the plot; returns the paths."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "gan-log.json"]
        write_text(paths[0], json.dumps(self.to_dict(), indent=1), what="GAN training log")
        if plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:  # training must not need the [eval] extra
                return paths
            paths.append(plot_gan_training(self, folder / "gan-training.png"))
        return paths


def plot_gan_training(log: GanLog, path: Path) -> Path:
    """Two panels over steps: D and G losses; distinct bars and mean pairwise distance of
    the generated samples, the data's as dashed lines."""
    from antiphon.models.plots import GEN_COLOR, REF_COLOR, _figure, _save

    fig = _figure(10, 3.5)
    losses, div = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    series = (
        ("d_loss", False, "tab:red", "D"),
        ("g_loss", False, "tab:green", "G (adversarial)"),
        ("g_loss", True, "tab:gray", "G pre-training (max. likelihood)"),
    )
    for key, pre, color, label in series:
        pts = [
            (r["step"], r[key])
            for r in log.rows
            if r.get(key) is not None and bool(r.get("pretraining")) == pre
        ]
        if pts:
            losses.plot(*zip(*pts), color=color, label=label, marker=".")
    losses.set_xlabel("step")
    losses.set_ylabel("loss")
    losses.set_title("losses (D and G: ln 2 = 0.69 at the balance)")
    losses.legend(fontsize="small")
    for key, color in (("distinct_bars", GEN_COLOR), ("mean_distance", REF_COLOR)):
        pts = [(r["step"], r[key]) for r in log.rows if r.get(key) is not None]
        if pts:
            div.plot(*zip(*pts), color=color, label=f"{key.replace('_', ' ')} (samples)")
        if log.data_diversity is not None:
            value = getattr(log.data_diversity, key)
            div.axhline(value, color=color, linestyle="--", label=f"{key.replace('_', ' ')} (data)")
    div.set_ylim(0, 1.05)
    div.set_xlabel("step")
    div.set_title("diversity of samples (collapse: toward 0)")
    div.legend(fontsize="small")
    return _save(fig, path)
