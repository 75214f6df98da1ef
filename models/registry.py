"""The model families antiphon knows, by name.

A family is registered once here; training, export, verification, ``continue`` and the
daemon find it by the name stored in its checkpoint and ONNX metadata, and the shared tests
are parametrized over this registry (a registered family without coverage fails a test).
Entries name their modules as strings so that listing families never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from antiphon.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    module: str  # torch module holding the config dataclass and the nn.Module
    config: str  # config dataclass name in ``module``
    model: str  # nn.Module class name in ``module``
    representation: str  # "tokens": miditok ids in, next-token logits out
    state: str  # "kv" (attention cache) | "recurrent" | "none"
    summary: str

    def load(self) -> tuple[type, type]:
        mod = importlib.import_module(self.module)
        return getattr(mod, self.config), getattr(mod, self.model)

    def build(self, config: dict | None = None, **overrides: Any) -> Any:
        cfg_cls, model_cls = self.load()
        cfg = cfg_cls.from_dict({**(config or {}), **overrides})
        return model_cls(cfg)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            name="transformer",
            module="antiphon.models.transformer",
            config="TransformerConfig",
            model="Transformer",
            representation="tokens",
            state="kv",
            summary="GPT-style decoder over miditok tokens with a KV cache (the default)",
        ),
    ]
}


def family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UserError(
            f"unknown model family {name!r}; choose one of: {', '.join(sorted(FAMILIES))}"
        ) from None
