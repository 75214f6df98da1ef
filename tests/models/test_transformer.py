from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from antiphon.models.transformer import Transformer, TransformerConfig  # noqa: E402


def tiny() -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        TransformerConfig(vocab_size=40, block_size=64, n_layer=2, n_head=2, n_embd=32)
    ).eval()


@torch.no_grad()
def test_cached_forward_equals_uncached() -> None:
    m = tiny()
    x = torch.randint(0, 40, (2, 30))
    full, _ = m(x)
    # prefill 11 tokens, then one token at a time, then a chunk of 5
    logits, past = m(x[:, :11], None, m.empty_cache(2))
    outs = [logits]
    pos = 11
    for i in range(11, 25):
        step, past = m(x[:, i : i + 1], torch.full((2, 1), i), past)
        outs.append(step)
        pos += 1
    chunk, past = m(x[:, 25:30], torch.arange(25, 30).expand(2, 5), past)
    outs.append(chunk)
    cached = torch.cat(outs, dim=1)
    assert cached.shape == full.shape
    assert torch.allclose(cached, full, atol=1e-5)
    assert past[0][0].shape == (2, 2, 30, 16)


@torch.no_grad()
def test_positions_are_relative_so_a_slid_window_sees_the_same_distances() -> None:
    m = tiny()
    x = torch.randint(0, 40, (1, 20))
    a, _ = m(x, torch.arange(20).unsqueeze(0))
    b, _ = m(x, torch.arange(1000, 1020).unsqueeze(0))
    assert torch.allclose(a, b, atol=1e-4)


def test_config_round_trips() -> None:
    c = TransformerConfig(n_layer=3, n_embd=48, n_head=3)
    assert TransformerConfig.from_dict(c.to_dict()) == c
