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
def test_buffer_form_equals_the_grown_cache() -> None:
    """The exported form (fixed-capacity KV buffers written by rows) computes what the
    eager form (a cache grown by concatenation) computes, and leaves rows beyond the tokens
    held untouched."""
    m = tiny()
    x = torch.randint(0, 40, (1, 30))
    full, _ = m(x)
    capacity = 40
    buffers = [(torch.zeros(1, 2, capacity, 16), torch.zeros(1, 2, capacity, 16))] * 2
    outs, held = [], 0
    for start, stop in ((0, 11), *((i, i + 1) for i in range(11, 25)), (25, 30)):
        n = stop - start
        lengths = (torch.tensor([held + n - 1], dtype=torch.int32), torch.tensor(held + n))
        logits, buffers = m(x[:, start:stop], torch.arange(start, stop)[None], buffers, lengths)
        outs.append(logits)
        held += n
    assert torch.allclose(torch.cat(outs, dim=1), full, atol=1e-5)
    _, grown = m(x, None, m.empty_cache())
    for (kb, vb), (kg, vg) in zip(buffers, grown):
        assert torch.allclose(kb[:, :, :30], kg, atol=1e-6)
        assert torch.allclose(vb[:, :, :30], vg, atol=1e-6)
        assert not kb[:, :, 30:].any() and not vb[:, :, 30:].any()


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


def test_resumed_training_continues_exactly_where_it_stopped(synth_corpus, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from antiphon.models.train import TrainConfig, load_checkpoint, train

    def config(out: str) -> TrainConfig:
        return TrainConfig(
            data=str(synth_corpus),
            out=str(tmp_path / out),
            steps=8,
            batch_size=2,
            block_size=32,
            warmup=2,
            eval_every=4,
            eval_pieces=2,
            threads=1,
            model={"n_layer": 1, "n_embd": 16, "n_head": 2, "dropout": 0.0},
        )

    class Interrupted(Exception):
        pass

    def crash(msg: str) -> None:  # the process dies after the step-4 checkpoint was written
        if msg.startswith("step 8"):
            raise Interrupted

    straight = load_checkpoint(train(config("straight"), progress=False)["checkpoint"])
    with pytest.raises(Interrupted):
        train(config("interrupted"), progress=False, log=crash)
    assert load_checkpoint(tmp_path / "interrupted" / "ckpt.pt")["step"] == 4
    resumed = train(config("interrupted"), resume=True, progress=False)
    again = load_checkpoint(resumed["checkpoint"])
    assert again["step"] == straight["step"] == 8
    assert [h["step"] for h in again["history"]] == [4, 8]
    for name, weight in straight["model"].items():
        assert torch.equal(again["model"][name], weight), name
