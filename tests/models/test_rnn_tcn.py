"""Token RNN/GRU/LSTM and the causal convolutional model: the stateful path (prefill, one
token at a time, chunks) equals the full forward, configs round-trip, causality holds."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from antiphon.errors import UserError  # noqa: E402
from antiphon.models.registry import family  # noqa: E402
from antiphon.models.rnn import (  # noqa: E402
    GRUConfig,
    LSTMConfig,
    PlainRNNConfig,
    TokenRNN,
    TokenRNNConfig,
)
from antiphon.models.tcn import TCN, TCNConfig  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from a thread pool, and on a shared machine a descheduled
    pool thread stalls every op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


V = 40
SMALL = {
    "token-rnn": {"n_layer": 2, "n_embd": 24, "n_hidden": 24},
    "token-gru": {"n_layer": 2, "n_embd": 24, "n_hidden": 32},
    "token-lstm": {"n_layer": 3, "n_embd": 24, "n_hidden": 24},
    "tcn": {"n_layer": 5, "n_embd": 24, "kernel_size": 3, "dilation_cycle": 4},
}


def small(name: str, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = {"vocab_size": V, "block_size": 64, **SMALL[name], **overrides}
    return family(name).build(cfg).eval()


@pytest.mark.parametrize("name", sorted(SMALL))
@torch.no_grad()
def test_stateful_forward_equals_full_forward(name: str) -> None:
    m = small(name)
    x = torch.randint(0, V, (2, 40))
    full, _ = m(x)
    # prefill 11 tokens from a fresh state, then one token at a time, then chunks of 5 and 10
    logits, state = m(x[:, :11])
    outs = [logits]
    for i in range(11, 25):
        step, state = m(x[:, i : i + 1], state)
        outs.append(step)
    for a, b in ((25, 30), (30, 40)):
        chunk, state = m(x[:, a:b], state)
        outs.append(chunk)
    stepped = torch.cat(outs, dim=1)
    assert stepped.shape == full.shape == (2, 40, V)
    assert torch.allclose(stepped, full, atol=1e-5)
    # the state has a fixed size, whatever was heard
    fresh = m.empty_state(2)
    assert [s.shape for s in state] == [s.shape for s in fresh]


@pytest.mark.parametrize("name", sorted(SMALL))
@torch.no_grad()
def test_the_future_does_not_leak_into_the_past(name: str) -> None:
    m = small(name)
    x = torch.randint(0, V, (1, 30))
    y = x.clone()
    y[0, 20:] = (y[0, 20:] + 1) % V
    a, _ = m(x)
    b, _ = m(y)
    assert torch.allclose(a[:, :20], b[:, :20], atol=1e-6)
    assert not torch.allclose(a[:, 20:], b[:, 20:], atol=1e-4)


def test_rnn_state_shapes_and_cells() -> None:
    for name, cell, n_state in (
        ("token-rnn", "rnn", 1),
        ("token-gru", "gru", 1),
        ("token-lstm", "lstm", 2),
    ):
        m = small(name)
        assert isinstance(m, TokenRNN) and m.config.cell == cell
        assert isinstance(
            m.rnn, {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cell]
        )
        _, state = m(torch.randint(0, V, (3, 7)))
        cfg = m.config
        assert [tuple(s.shape) for s in state] == [(cfg.n_layer, 3, cfg.n_hidden)] * n_state


def test_weights_are_tied_when_sizes_allow() -> None:
    tied = small("token-rnn")  # n_embd == n_hidden
    assert tied.head.weight is tied.wte.weight
    untied = small("token-gru")  # 24 -> 32
    assert untied.head.weight is not untied.wte.weight
    assert small("token-lstm", tie_weights=False).head.weight is not small("token-lstm").wte.weight
    tcn = small("tcn")
    assert tcn.head.weight is tcn.wte.weight


def test_configs_reject_models_they_cannot_build() -> None:
    assert PlainRNNConfig().cell == "rnn" and GRUConfig().cell == "gru"
    assert LSTMConfig().cell == "lstm"
    with pytest.raises(UserError, match="--arch token-lstm"):
        family("token-gru").build({"cell": "lstm"})
    with pytest.raises(UserError, match="cell must be one of"):
        TokenRNNConfig(cell="transformer")
    with pytest.raises(UserError, match="kernel_size"):
        TCNConfig(kernel_size=1)


@pytest.mark.parametrize(
    "config",
    [
        PlainRNNConfig(n_layer=3, n_hidden=64, dropout=0.0),
        GRUConfig(n_embd=128, n_hidden=512, tie_weights=False),
        LSTMConfig(n_layer=3, n_embd=512, n_hidden=512, block_size=1024),
        TokenRNNConfig(cell="lstm"),
        TCNConfig(kernel_size=2, n_layer=30, dilation_cycle=10, n_embd=256, gated=False),
    ],
)
def test_config_round_trips(config) -> None:  # type: ignore[no-untyped-def]
    assert type(config).from_dict(config.to_dict()) == config


def test_tcn_receptive_field_is_stated_and_exact() -> None:
    c = TCNConfig()
    assert c.dilations == [1, 2, 4, 8, 16, 32, 64, 128]
    assert c.receptive_field == 511 == c.to_dict()["receptive_field"]
    wavenet = TCNConfig(kernel_size=2, n_layer=30, dilation_cycle=10)
    assert wavenet.receptive_field == 1 + 3 * 1023
    m = small("tcn")  # kernel 3, dilations 1, 2, 4, 8, 1: receptive field 33
    rf = m.config.receptive_field
    assert rf == 33
    x = torch.randint(0, V, (1, 60))
    with torch.no_grad():
        base, _ = m(x)
        for back, changes in ((rf - 1, True), (rf, False)):
            y = x.clone()
            y[0, 59 - back] = (y[0, 59 - back] + 1) % V
            out, _ = m(y)
            assert (not torch.allclose(out[0, 59], base[0, 59], atol=1e-6)) == changes, back


@torch.no_grad()
def test_tcn_buffers_hold_the_last_inputs_of_each_block() -> None:
    m = small("tcn")
    _, state = m(torch.randint(0, V, (2, 3)))  # shorter than every buffer but the first
    assert [tuple(b.shape) for b in state] == [(2, p, 24) for p in m.config.buffer_sizes]
    assert isinstance(m, TCN)


@torch.no_grad()
def test_a_tcn_block_is_a_dilated_causal_convolution() -> None:
    import torch.nn.functional as F

    from antiphon.models.tcn import CausalBlock

    torch.manual_seed(0)
    cfg = TCNConfig(n_embd=8, kernel_size=3)
    block = CausalBlock(cfg, dilation=4).eval()
    x = torch.randn(2, 21, 8)
    got, _ = block(x, torch.zeros(2, block.context, 8))
    # the same weights as an nn.Conv1d kernel (out, C, k), zero padded on the left
    kernel = block.conv.weight.view(16, 3, 8).permute(0, 2, 1)
    h = F.pad(block.norm(x).transpose(1, 2), (block.context, 0))
    h = F.conv1d(h, kernel, block.conv.bias, dilation=4).transpose(1, 2)  # (B, S, 2C)
    a, b = h.chunk(2, dim=-1)
    want = x + block.proj(torch.tanh(a) * torch.sigmoid(b))
    assert torch.allclose(got, want, atol=1e-5)
