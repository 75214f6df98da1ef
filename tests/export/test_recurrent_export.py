"""Export of the fixed-state token families (RNN/GRU/LSTM, TCN) on tiny random models:
parity, the state declared in the signature, and the daemon's stepper over the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.export.onnx_export import export_checkpoint, update_metadata  # noqa: E402
from antiphon.export.verify import ATOL, verify  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.registry import family  # noqa: E402
from antiphon.models.tokenizer import Tokenizer  # noqa: E402
from antiphon.models.train import CHECKPOINT_FORMAT, versions  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from a thread pool, and on a shared machine a descheduled
    pool thread stalls every op."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_MODELS = {
    "token-rnn": {"n_layer": 2, "n_embd": 32, "n_hidden": 32},
    "token-gru": {"n_layer": 2, "n_embd": 24, "n_hidden": 32},
    "token-lstm": {"n_layer": 2, "n_embd": 32, "n_hidden": 32},
    "tcn": {"n_layer": 4, "n_embd": 32, "kernel_size": 3},
}
STATE = {
    "token-rnn": {"h_in": [2, "batch", 32]},
    "token-gru": {"h_in": [2, "batch", 32]},
    "token-lstm": {"h_in": [2, "batch", 32], "c_in": [2, "batch", 32]},
    "tcn": {f"buf_in_{i}": ["batch", 2 * 2**i, 32] for i in range(4)},
}


@pytest.fixture(scope="module", params=sorted(TINY_MODELS))
def exported(request, tmp_path_factory) -> tuple[str, Path, Path]:  # type: ignore[no-untyped-def]
    """(family, checkpoint, verified .onnx) of a random-initialised tiny model."""
    name = request.param
    tok = Tokenizer.create()
    torch.manual_seed(0)
    model = family(name).build({"vocab_size": len(tok), "block_size": 80, **TINY_MODELS[name]})
    folder = tmp_path_factory.mktemp(name)
    ckpt = folder / "ckpt.pt"
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "family": name,
            "model_config": model.config.to_dict(),
            "model": model.state_dict(),
            "tokenizer": tok.to_params(),
            "step": 0,
            "train_config": {},
            "metrics": {},
            "data": {"name": "none (random init)"},
            "versions": versions(),
        },
        ckpt,
    )
    path, _, graph = export_checkpoint(ckpt, folder / f"{name}.onnx")
    update_metadata(path, verification=verify(graph, ModelFile.open(path)).to_dict())
    return name, ckpt, path


def test_export_verifies_and_declares_a_fixed_state(exported) -> None:  # type: ignore[no-untyped-def]
    name, _, path = exported
    mf = ModelFile.open(path)
    info = mf.info
    assert info.family == name and info.representation == "tokens"
    assert info.max_context == 80  # the training window; the state itself is never slid
    assert info.verification["greedy_identical"] is True
    assert info.verification["max_abs_diff"] <= ATOL
    sig = info.signature
    assert "positions" not in sig.inputs
    assert {p.input: p.shape for p in sig.state} == STATE[name]
    assert all(p.axis == -1 and p.output == p.input.replace("_in", "_out") for p in sig.state)
    assert all(sig.outputs[p.output] == p.shape for p in sig.state)
    # the batch axis is named in the graph itself; the other state axes are fixed
    graph_inputs = {i.name: i.shape for i in mf.session.get_inputs()}
    assert graph_inputs["tokens"] == ["batch", "seq"]
    for state_name, shape in STATE[name].items():
        assert graph_inputs[state_name] == shape


def test_the_stepper_steps_in_constant_size_past_the_window(exported) -> None:  # type: ignore[no-untyped-def]
    from antiphon.export.reload import torch_from_onnx

    _, _, path = exported
    mf = ModelFile.open(path)
    stepper = mf.stepper()
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, len(mf.info.vocab), size=150).tolist()  # beyond the 80 window
    state = stepper.feed(stepper.empty(), tokens[:50])
    for t in tokens[50:]:
        state = stepper.feed(state, [t])
    assert state.length == 0 and state.position == 150
    for p in mf.info.signature.state:
        assert state.arrays[p.input].shape == tuple(1 if d == "batch" else d for d in p.shape)
    # ... and the state after 150 tokens is torch's, which never slid either
    model = torch_from_onnx(path)
    with torch.no_grad():
        logits, _ = model(torch.tensor([tokens]))
    assert np.allclose(state.last_logits, logits[0, -1].numpy(), atol=1e-4)


def test_the_torch_model_rebuilds_from_the_file(exported) -> None:  # type: ignore[no-untyped-def]
    from antiphon.export.reload import torch_from_onnx
    from antiphon.models.train import load_checkpoint, model_from_checkpoint

    _, ckpt, path = exported
    a = model_from_checkpoint(load_checkpoint(ckpt)).state_dict()
    b = torch_from_onnx(path).state_dict()
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_feed_warms_the_state_with_a_real_run(exported) -> None:  # type: ignore[no-untyped-def]
    from antiphon.export.graphs import graph_for
    from antiphon.models.train import load_checkpoint, model_from_checkpoint

    name, ckpt, _ = exported
    graph = graph_for(name, model_from_checkpoint(load_checkpoint(ckpt)))
    cold, warm = graph.feed(seq=2, past=0, batch=3), graph.feed(seq=2, past=9, batch=3)
    assert cold["tokens"].shape == warm["tokens"].shape == (3, 2)
    for state_name, shape in STATE[name].items():
        want = tuple(3 if d == "batch" else d for d in shape)
        assert cold[state_name].shape == warm[state_name].shape == want
        assert not cold[state_name].any() and warm[state_name].any()
