"""TokenStepper over KV buffers written in place: states stay values (a fork never
corrupts the state it came from), with a fake model for the logic and the real exported
transformer for the IO-bound path the daemon uses."""

from __future__ import annotations

import numpy as np
import pytest

from antiphon.contract import Signature, StatePair
from antiphon.live.stepper import PREFILL_CHUNK, TokenStepper, greedy

V = 1000
SIG = Signature(
    inputs={
        "tokens": ["batch", "seq"],
        "seqlens_k": ["batch"],
        "total_sequence_length": [],
        "past": ["batch", 1, "capacity", 1],
    },
    outputs={"logits": ["batch", "seq", V], "present": ["batch", 1, "capacity", 1]},
    state=[StatePair("past", "present", 2, ["batch", 1, "capacity", 1], inplace=True)],
)


def _model(feed: dict[str, np.ndarray], buffer: np.ndarray) -> np.ndarray:
    """Writes the new tokens into rows [T-S, T); the logits at each position are one-hot at
    the sum of the tokens held so far (mod V), so they tell exactly what the buffer held."""
    tokens = feed["tokens"][0]
    held = int(feed["total_sequence_length"])
    start = held - len(tokens)
    buffer[0, 0, start:held, 0] = tokens
    sums = np.cumsum(buffer[0, 0, :held, 0])[start:].astype(np.int64) % V
    logits = np.zeros((1, len(tokens), V), dtype=np.float32)
    logits[0, np.arange(len(tokens)), sums] = 1.0
    return logits


def run_copy(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    present = feed["past"].copy()  # a plain session: whole buffers in, whole buffers out
    present[0, 0, int(feed["total_sequence_length"]) :] = -7  # rows beyond T: unspecified
    return {"logits": _model(feed, present), "present": present}


def run_bound(feed, bound):  # type: ignore[no-untyped-def]
    ((name, out, array),) = bound
    assert (name, out) == ("past", "present")
    return {"logits": _model(feed, array)}


def said(state) -> int:  # type: ignore[no-untyped-def]
    return int(np.argmax(state.last_logits))


@pytest.mark.parametrize("bound", [False, True], ids=["copy", "in-place"])
def test_forks_of_a_state_never_see_each_others_tokens(bound: bool) -> None:
    st = TokenStepper(run_copy, SIG, max_context=64, run_bound=run_bound if bound else None)
    base = st.feed(st.empty(), [1, 2, 3])
    a = st.feed(base, [4])  # e.g. the speculative answer, written in place after base
    b = st.feed(base, [5])  # the player played on instead: base's rows, not a's
    assert (said(a), said(b)) == (10, 11)
    a2, b2 = st.feed(a, [100]), st.feed(b, [200])
    assert (said(a2), said(b2)) == (110, 211)
    assert said(st.feed(base, [0])) == 6  # base itself is still intact
    assert said(st.feed(a2, [1])) == 111


@pytest.mark.parametrize("bound", [False, True], ids=["copy", "in-place"])
def test_the_window_slides_and_keeps_the_most_recent_tokens(bound: bool) -> None:
    st = TokenStepper(run_copy, SIG, max_context=16, run_bound=run_bound if bound else None)
    state = st.empty()
    for t in range(1, 41):
        state = st.feed(state, [t])
        assert state.length <= 16
        assert said(state) == sum(range(t - state.length + 1, t + 1)) % V
    assert state.position == 40
    # a prompt longer than the window keeps its end
    long = st.feed(st.empty(), list(range(1, 41)))
    assert long.length == 16 and said(long) == sum(range(25, 41))


GROWN = Signature(
    inputs={"tokens": ["batch", "seq"], "past": ["batch", 1, "past", 1]},
    outputs={"logits": ["batch", "seq", V], "present": ["batch", 1, "past+seq", 1]},
    state=[StatePair("past", "present", 2, ["batch", 1, "past", 1])],
)


def run_grown(feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A file exported before the KV buffers: the cache comes back grown by the new rows."""
    tokens = feed["tokens"][0]
    present = np.concatenate([feed["past"], tokens.astype(np.float32)[None, None, :, None]], 2)
    sums = np.cumsum(present[0, 0, :, 0])[-len(tokens) :].astype(np.int64) % V
    logits = np.zeros((1, len(tokens), V), dtype=np.float32)
    logits[0, np.arange(len(tokens)), sums] = 1.0
    return {"logits": logits, "present": present}


def test_a_grown_cache_still_steps_forks_and_slides() -> None:
    st = TokenStepper(run_grown, GROWN, max_context=16)
    base = st.feed(st.empty(), [1, 2, 3])
    assert (said(st.feed(base, [4])), said(st.feed(base, [5]))) == (10, 11)
    state = base
    for t in range(4, 41):
        state = st.feed(state, [t])
        assert state.length <= 16 and state.arrays["past"].shape[2] == state.length
        assert said(state) == sum(range(t - state.length + 1, t + 1)) % V


def test_log_probs_scores_every_position_of_a_window() -> None:
    st = TokenStepper(run_copy, SIG, max_context=64, run_bound=run_bound)
    lp = st.log_probs([1, 2, 3])
    assert lp.shape == (3, V)
    assert list(lp.argmax(axis=-1)) == [1, 3, 6]
    assert np.allclose(np.exp(lp).sum(axis=-1), 1.0)


@pytest.mark.parametrize("bound", [False, True], ids=["copy", "in-place"])
def test_a_long_prompt_runs_in_chunks_and_scores_every_position(bound: bool) -> None:
    calls: list[int] = []

    def counted(feed, *rest):  # type: ignore[no-untyped-def]
        calls.append(feed["tokens"].shape[1])
        return (run_bound if rest else run_copy)(feed, *rest)

    n = 2 * PREFILL_CHUNK + 7
    st = TokenStepper(
        counted, SIG, max_context=4 * PREFILL_CHUNK, run_bound=counted if bound else None
    )
    tokens = list(range(1, n + 1))
    lp = st.log_probs(tokens)
    assert calls == [PREFILL_CHUNK, PREFILL_CHUNK, 7]  # no run longer than a chunk
    assert lp.shape == (n, V)
    assert list(lp.argmax(axis=-1)) == [sum(tokens[: i + 1]) % V for i in range(n)]
    whole = st.feed(st.empty(), tokens)
    stepped = st.empty()
    for t in tokens:
        stepped = st.feed(stepped, [t])
    assert (whole.length, whole.position) == (stepped.length, stepped.position) == (n, n)
    assert said(whole) == said(stepped) == sum(tokens) % V
    assert said(st.feed(whole, [5])) == (sum(tokens) + 5) % V  # the cache holds every row


def test_the_real_transformer_in_place_matches_the_copying_path(tiny_onnx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("torch")
    import antiphon.live.stepper

    monkeypatch.setattr(antiphon.live.stepper, "PREFILL_CHUNK", 32)  # the tiny window is 96
    from antiphon.live.session import ModelFile

    mf = ModelFile.open(tiny_onnx)
    bound, plain = mf.stepper(), TokenStepper(mf.run, mf.info.signature, mf.info.max_context)
    prompt = [1, *range(4, 30)]
    # 150 tokens through a 96-token window: slides included
    assert greedy(bound, prompt, 150) == greedy(plain, prompt, 150)
    # a window-long prompt (in chunks when longer than one) scores as a token at a time
    window = [1, *[4 + i % 40 for i in range(mf.info.max_context - 1)]]
    one_by_one = bound.empty()
    for t in window:
        one_by_one = bound.feed(one_by_one, [t])
    assert np.allclose(
        bound.feed(bound.empty(), window).last_logits, one_by_one.last_logits, atol=1e-4
    )
    base = bound.feed(bound.empty(), prompt)
    fork = bound.feed(base, [7, 8, 9])
    again = bound.feed(base, [10])  # base, after a fork was written in place
    fresh = plain.feed(plain.feed(plain.empty(), prompt), [10])
    assert np.allclose(again.last_logits, fresh.last_logits, atol=1e-5)
    assert np.allclose(
        bound.feed(fork, [11]).last_logits,
        plain.feed(plain.feed(plain.feed(plain.empty(), prompt), [7, 8, 9]), [11]).last_logits,
        atol=1e-5,
    )


def test_a_long_session_keeps_only_live_kv_buffers_bound(tiny_onnx) -> None:  # type: ignore[no-untyped-def]
    """The session's OrtValue cache keeps each array it binds alive: in a long session the
    window slides and forks copy, making new KV buffers; the dead ones must not pile up
    (a fixed 64-entry cache held eight dead sets, +15 MB of a 30-minute soak)."""
    import gc
    import weakref

    pytest.importorskip("torch")
    from antiphon.live.session import ModelFile

    mf = ModelFile.open(tiny_onnx)
    stepper = mf.stepper()
    n_kv = len(stepper.inplace)
    assert n_kv > 0
    made: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # the arrays alive
    created = 0
    base = stepper.feed(stepper.empty(), [1, 4, 5, 6])
    for answer in range(60):  # heard, then an answer forked from it: slides and copies
        base = stepper.feed(base, [4 + answer % 20, 5, 6, 7, 8, 9])
        fork = stepper.feed(base, [10, 11])
        fork = stepper.feed(fork, [12])
        base = stepper.feed(base, [13])  # the player played on: base is behind its fork
        for s in (base, fork):
            assert s.buffers is not None
            for a in s.buffers.arrays.values():
                if made.get(id(a)) is not a:
                    made[id(a)] = a
                    created += 1
    del fork
    gc.collect()
    assert created > 12 * n_kv  # the session made many sets of buffers
    # the live state's set, plus at most the few recent sets the cache may still bind
    assert len(made) <= 4 * n_kv
