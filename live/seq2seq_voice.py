"""The encoder-decoder's voice: keep what was heard as tokens, encode it once per answer, then
decode step by step.

The encoder is bidirectional, so it cannot be advanced one event at a time the way a KV
cache or an RNN state can: hearing is just keeping the most recent ``max_context`` tokens,
and each plan encodes them once (one run over the context, then O(1) per generated token).
Everything else — MIDILike encoding of closed ticks, the grammar mask, ``note_first``, the
note-offs at the end — is ``TokenVoice``'s, which this voice reuses by giving it a stepper
whose states are either a heard ``Context`` or a running ``Decoding``.

The ONNX file holds both graphs; each is gated on its inputs being non-empty (see
``export.seq2seq_graph``), so a decoder step feeds an empty context and an encoding feeds no
decoder tokens, and onnxruntime — which runs every node of a graph whatever outputs are
asked for — does no work for the half that is not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from antiphon.contract import Signature
from antiphon.live.engine import TokenVoice
from antiphon.live.session import ModelFile
from antiphon.live.stepper import RunFn

# The graph's names, declared once here (the export adapter imports them).
ENCODER_INPUTS = ["context"]
ENCODER_OUTPUTS = ["encoded", "init_h", "init_c"]
DECODER_INPUTS = ["tokens", "memory", "past_h", "past_c"]
DECODER_OUTPUTS = ["logits", "present_h", "present_c"]


@dataclass(frozen=True)
class Context:
    """Tokens heard so far (the most recent ``max_context``); nothing run yet."""

    tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Decoding:
    memory: np.ndarray  # (1, K, Hd) the encoded context
    h: np.ndarray  # (L, 1, Hd)
    c: np.ndarray  # (L, 1, Hd)
    last_logits: np.ndarray | None = None  # (V,) prediction for the next token


class Seq2SeqStepper:
    """Encode a context once, then decode token by token, through any ``run(feed)`` on
    named numpy arrays (onnxruntime in the daemon; torch or onnxruntime in verification).

    ``feed`` is what ``TokenVoice`` calls: on a ``Context`` it only appends tokens, on a
    ``Decoding`` it runs decoder steps."""

    def __init__(self, run: RunFn, signature: Signature, max_context: int) -> None:
        self.run = run
        self.max_context = max_context
        layers, _, hidden = signature.inputs["past_h"]
        self.no_context = np.zeros((1, 0), dtype=np.int64)
        self.no_tokens = np.zeros((1, 0), dtype=np.int64)
        self.no_memory = np.zeros((1, 0, hidden), dtype=np.float32)
        self.zero_state = np.zeros((layers, 1, hidden), dtype=np.float32)

    def empty(self) -> Context:
        return Context()

    def feed(self, state: Context | Decoding, tokens: Sequence[int]) -> Context | Decoding:
        if not tokens:
            return state
        if isinstance(state, Context):
            return Context((*state.tokens, *tokens)[-self.max_context :])
        return self._decode(state, tokens)[0]

    def begin(self, context: Context) -> Decoding:
        """Encode the context and give the decoder its last token, as in training (the
        decoder's first input is the last token the encoder read)."""
        if not context.tokens:
            raise ValueError("an encoder-decoder needs at least one token of context")
        return self._decode(self._encode(context.tokens), context.tokens[-1:])[0]

    def log_probs(self, window: Sequence[int]) -> np.ndarray:
        """(S, V) next-token log-probs of a token window through the graph, split as
        ``models.seq2seq.Seq2Seq.log_probs`` splits it: NLL through onnxruntime."""
        k = max(1, len(window) // 2)
        parts = [(window[:1], window[: k - 1])] if k > 1 else []
        parts.append((window[:k], window[k - 1 :]))
        logits = np.concatenate([self._decode(self._encode(c), t)[1] for c, t in parts])
        logits = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    def _encode(self, context: Sequence[int]) -> Decoding:
        out = self.run(
            {
                "context": np.asarray([context], dtype=np.int64),
                "tokens": self.no_tokens,
                "memory": self.no_memory,
                "past_h": self.zero_state,
                "past_c": self.zero_state,
            }
        )
        return Decoding(out["encoded"], out["init_h"], out["init_c"])

    def _decode(self, state: Decoding, tokens: Sequence[int]) -> tuple[Decoding, np.ndarray]:
        """The state after ``tokens`` and their logits (T, V)."""
        out = self.run(
            {
                "context": self.no_context,
                "tokens": np.asarray([tokens], dtype=np.int64),
                "memory": state.memory,
                "past_h": state.h,
                "past_c": state.c,
            }
        )
        logits = out["logits"][0]
        return Decoding(state.memory, out["present_h"], out["present_c"], logits[-1]), logits


def greedy(stepper: Seq2SeqStepper, prompt: Sequence[int], n: int) -> list[int]:
    """n greedy tokens after a prompt (export verification compares torch and onnxruntime)."""
    state = stepper.begin(Context(tuple(prompt)))
    out: list[int] = []
    for _ in range(n):
        assert state.last_logits is not None
        out.append(int(np.argmax(state.last_logits)))
        state = stepper.feed(state, out[-1:])  # type: ignore[assignment]
    return out


class Seq2SeqVoice(TokenVoice):
    """``TokenVoice`` with an encoder-decoder stepper: ``observe`` keeps tokens, ``plan``
    encodes them once and decodes with the sampler and the codec's grammar."""

    def __init__(self, model: ModelFile, *, max_gap_beats: float | None = None) -> None:
        super().__init__(model, max_gap_beats=max_gap_beats)
        info = model.info
        self.stepper = Seq2SeqStepper(model.run, info.signature, info.max_context)  # type: ignore[assignment]
        # The first runs of a session are slow (allocations): pay them now, not in an answer.
        self.stepper.begin(Context((self.codec.bos if self.codec.bos is not None else 0,)))

    def _generate(self, state, sampler, start, until, note_first):  # type: ignore[no-untyped-def]
        return super()._generate(self.stepper.begin(state), sampler, start, until, note_first)
