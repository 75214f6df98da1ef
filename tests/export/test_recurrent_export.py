"""Export of the fixed-state token families (RNN/GRU/LSTM, TCN) on tiny random models:
parity, the state declared in the signature, and the daemon's stepper over the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from antiphon.export.verify import ATOL, verify  # noqa: E402
from antiphon.live.session import ModelFile  # noqa: E402
from antiphon.models.midi.tokenizer import Tokenizer  # noqa: E402
from antiphon.models.registry import family  # noqa: E402
from tests.checkpoints import export_verified, save_checkpoint  # noqa: E402


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
    return _export_tiny(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def gru_exported(tmp_path_factory) -> tuple[str, Path, Path]:  # type: ignore[no-untyped-def]
    return _export_tiny("token-gru", tmp_path_factory)


def _export_tiny(name: str, tmp_path_factory) -> tuple[str, Path, Path]:  # type: ignore[no-untyped-def]
    tok = Tokenizer.create()
    torch.manual_seed(0)
    model = family(name).build({"vocab_size": len(tok), "block_size": 80, **TINY_MODELS[name]})
    folder = tmp_path_factory.mktemp(name)
    ckpt = folder / "ckpt.pt"
    save_checkpoint(ckpt, name, model, tokenizer=tok.to_params())
    path, _ = export_verified(ckpt, folder / f"{name}.onnx")
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


def _graph(name: str, ckpt: Path):  # type: ignore[no-untyped-def]
    from antiphon.export.graphs import graph_for
    from antiphon.models.train import load_checkpoint, model_from_checkpoint

    return graph_for(name, model_from_checkpoint(load_checkpoint(ckpt)))


def test_only_the_gru_has_a_single_step_form(exported) -> None:  # type: ignore[no-untyped-def]
    name, ckpt, _ = exported
    graph = _graph(name, ckpt)
    step = getattr(graph, "step_graph", lambda: None)()
    assert (step is not None) == (name == "token-gru")


def test_the_gru_step_form_runs_sequences_a_step_at_a_time(gru_exported, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The GRU written out as cells (fp32, before quantization) is the sequence graph's
    function: ModelFile runs a 9-token input through the one-step graph step by step."""
    from dataclasses import replace

    from antiphon.export.onnx_export import export_graph, write_with_metadata

    name, ckpt, path = gru_exported
    step = _graph(name, ckpt).step_graph()
    out = tmp_path / "step.onnx"
    info = replace(ModelFile.open(path).info, signature=step.signature())
    write_with_metadata(export_graph(step, out), info, out)
    one, seq = ModelFile.open(out), ModelFile.open(path)
    assert {i.name: i.shape for i in one.session.get_inputs()}["tokens"] == ["batch", 1]
    assert one.info.signature.outputs["logits"] == ["batch", 1, len(info.vocab)]
    rng = np.random.default_rng(3)
    feed = {"tokens": rng.integers(0, len(info.vocab), (1, 9)), "h_in": rng.normal(size=(2, 1, 32))}
    feed["h_in"] = feed["h_in"].astype(np.float32)
    a, b = one.run(feed), seq.run(feed)
    assert a["logits"].shape == b["logits"].shape == (1, 9, len(info.vocab))
    assert np.abs(a["logits"] - b["logits"]).max() < 1e-5
    assert np.abs(a["h_out"] - b["h_out"]).max() < 1e-5
    assert verify(step, one).greedy_identical


def test_the_int8_gru_is_quantized_verified_and_rebuilds(gru_exported, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import onnx

    from antiphon.export.quantize import compare, dequantized_weights, quantize_export
    from antiphon.export.reload import torch_from_onnx

    name, ckpt, path = gru_exported
    q = quantize_export(path, _graph(name, ckpt), tmp_path / "q.onnx")
    mf = ModelFile.open(q)
    assert mf.info.signature.inputs["tokens"] == ["batch", 1]
    assert mf.info.verification["greedy_identical"] is True  # the fp32 step form's check
    proto = onnx.load(str(q))
    quantized = {i.name for i in proto.graph.initializer if i.name.endswith("_quantized")}
    want = {f"model.rnn.weight_{w}_l{k}.T_quantized" for w in ("ih", "hh") for k in range(2)}
    assert want <= quantized and "model.head.weight.T_quantized" in quantized  # (untied here)
    assert not any(n.op_type == "GRU" for n in proto.graph.node)
    # torch rebuilt from the int8 file runs the weights the file holds
    deq = dequantized_weights(proto)["model.rnn.weight_hh_l0"]
    rebuilt = torch_from_onnx(q).state_dict()["rnn.weight_hh_l0"].numpy()
    assert np.array_equal(rebuilt, deq)
    fp32 = torch_from_onnx(path).state_dict()["rnn.weight_hh_l0"].numpy()
    assert 0 < np.abs(rebuilt - fp32).max() <= np.abs(fp32).max() / 127
    # and the stepper decodes with it like fp32 does, within quantization error
    r = compare(ModelFile.open(path), mf, None, "")
    assert r.eval_tokens > 0 and abs(r.nll_change) < 0.05
    assert r.int8_bytes < 0.6 * r.fp32_bytes  # (the embedding table stays fp32)
