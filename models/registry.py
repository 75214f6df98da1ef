"""The model families antiphon knows, by name — the one place a family is registered.

An entry names (as "module:attribute" strings, so listing families never imports torch):
the torch module with its config dataclass and ``nn.Module``; the export adapter that turns
it into one ONNX graph (``export.graphs``); the voice that plays it live and in
``antiphon continue`` (``live.engine``); and, for families that do not learn from token
windows, their own trainer. Training, export, verification, ``continue`` and the daemon find
a family by the name stored in its checkpoint and ONNX metadata, and the shared tests are
parametrized over this registry (a registered family without a tiny test config fails).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from antiphon.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    model: str  # "module:Class" of the nn.Module; its config dataclass is ``config``
    config: str  # "module:Class" of the config dataclass
    adapter: str  # "module:Class" of the ONNX graph adapter (export.graphs)
    # "tokens" (miditok ids) | "frames" (piano roll) | "notes" | "bars" | "melody" | "multitrack"
    representation: str
    summary: str
    voice: str | None = None  # "module:Class" (live.engine); None: by representation
    trainer: str | None = None  # "module:function"; None: token-window training
    # ``antiphon train``'s steps and global batch where the user gives none (else the
    # shared 1,400 x 8): a family whose model needs more data to learn at all says so here.
    steps: int | None = None
    batch_size: int | None = None

    def load(self) -> tuple[type, type]:
        return resolve(self.config), resolve(self.model)

    def build(self, config: dict | None = None, **overrides: Any) -> Any:
        cfg_cls, model_cls = self.load()
        return model_cls(cfg_cls.from_dict({**(config or {}), **overrides}))

    def build_written(self, config: dict) -> Any:
        """The model of a checkpoint's config, read as the config class reads one written
        before its newer fields (``written``), where it says."""
        cfg_cls, model_cls = self.load()
        return model_cls(getattr(cfg_cls, "written", cfg_cls.from_dict)(config))


def resolve(spec: str) -> Any:
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def _token_family(
    name: str, module: str, model: str, config: str, summary: str, **kw: Any
) -> Family:
    return Family(
        name=name,
        model=f"antiphon.models.{module}:{model}",
        config=f"antiphon.models.{module}:{config}",
        adapter=kw.pop("adapter"),
        representation="tokens",
        summary=summary,
        **kw,
    )


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in [
        _token_family(
            "transformer",
            "transformer",
            "Transformer",
            "TransformerConfig",
            "GPT-style decoder over miditok tokens with a KV cache (the default)",
            adapter="antiphon.export.graphs:TokenKVGraph",
        ),
        *[
            Family(
                name=f"pianoroll-{cell}",
                model=f"antiphon.models.pianoroll:PianoRoll{cell.upper()}",
                config="antiphon.models.pianoroll:PianoRollConfig",
                adapter="antiphon.export.frames_graph:PianoRollGraph",
                representation="frames",
                summary=f"many-to-one 88-key piano-roll {cell.upper()}, 2x256, next frame "
                "by per-key sigmoids or a NADE head (chords as chords)",
                voice="antiphon.live.frames_voice:FrameVoice",
                trainer="antiphon.models.frames_train:train_frames",
            )
            for cell in ("gru", "lstm")
        ],
        *[
            _token_family(
                f"token-{cell}",
                "rnn",
                "TokenRNN",
                config,
                f"{label} over miditok tokens, 2x256; the recurrent state (O(1) per event, "
                "never slid) carries everything heard",
                adapter="antiphon.export.recurrent_graphs:TokenRNNGraph",
            )
            for cell, config, label in (
                ("rnn", "PlainRNNConfig", "tanh RNN"),
                ("gru", "GRUConfig", "GRU"),
                ("lstm", "LSTMConfig", "LSTM"),
            )
        ],
        _token_family(
            "tcn",
            "tcn",
            "TCN",
            "TCNConfig",
            "dilated causal convolutions over miditok tokens (TCN/WaveNet), receptive field "
            "511, incremental: a step updates per-layer buffers",
            adapter="antiphon.export.recurrent_graphs:TCNGraph",
        ),
        Family(
            name="note-rnn",
            model="antiphon.models.noternn:NoteRNN",
            config="antiphon.models.noternn:NoteRNNConfig",
            adapter="antiphon.export.notes_graph:NoteRNNGraph",
            representation="notes",
            summary="the TensorFlow tutorial's note LSTM (128): notes as (pitch, step, duration) "
            "in beats, heads for pitch logits, step and duration; answers with a melody",
            voice="antiphon.live.notes_voice:NoteVoice",
            trainer="antiphon.models.notes_train:train_notes",
        ),
        _token_family(
            "seq2seq",
            "seq2seq",
            "Seq2Seq",
            "Seq2SeqConfig",
            "encoder-decoder over miditok tokens: a bidirectional LSTM (2 layers) reads the "
            "context, an LSTM decoder with attention continues it; one encoding per answer",
            adapter="antiphon.export.seq2seq_graph:Seq2SeqGraph",
            voice="antiphon.live.seq2seq_voice:Seq2SeqVoice",
        ),
        Family(
            name="crnn-gan",
            model="antiphon.models.crnngan:CRNNGenerator",
            config="antiphon.models.crnngan:CRNNGANConfig",
            adapter="antiphon.export.crnngan_graph:CRNNGANGraph",
            representation="notes",
            summary="C-RNN-GAN: notes as continuous (step, length, pitch, velocity), an LSTM "
            "generator fed noise and its last note against a bidirectional-LSTM critic",
            voice="antiphon.live.crnngan_voice:CRNNGANVoice",
            trainer="antiphon.models.crnngan_train:train_crnngan",
        ),
        Family(
            name="midinet",
            model="antiphon.models.midinet:MidiNetGenerator",
            config="antiphon.models.midinet:MidiNetConfig",
            adapter="antiphon.export.midinet_graph:MidiNetGraph",
            representation="bars",
            summary="MidiNet's convolutional GAN: a bar of melody (16 steps) from noise, the "
            "previous bar (a conditioner CNN at every level) and the chord; answers bar by bar",
            voice="antiphon.live.midinet_voice:MidiNetVoice",
            trainer="antiphon.models.midinet_train:train_midinet",
        ),
        Family(
            name="musicvae",
            model="antiphon.models.musicvae:MusicVAE",
            config="antiphon.models.musicvae:MusicVAEConfig",
            adapter="antiphon.export.vae_graph:VAEGraph",
            representation="melody",
            summary="MusicVAE: a bidirectional-LSTM encoder to a latent, an LSTM decoder fed it "
            "at every step (2-bar melodies; the hierarchical conductor by config); answers "
            "with variations of the player's phrase, morphs between phrases",
            voice="antiphon.live.vae_voice:VAEVoice",
            trainer="antiphon.models.vae_train:train_vae",
            # 1,400 x 8 ended with the latent unused (2.3 bits); 10,000 x 32 takes about
            # 12 minutes on a quiet core (0.07 s a step), under an hour on a loaded one
            steps=10_000,
            batch_size=32,
        ),
        Family(
            name="musegan",
            model="antiphon.models.musegan:MuseGAN",
            config="antiphon.models.musegan:MuseGANConfig",
            adapter="antiphon.export.musegan_graph:MuseGANGraph",
            representation="multitrack",
            summary="MuseGAN (hybrid): four voices x 4 bars of piano roll from shared and "
            "per-track latents through a temporal generator, WGAN-GP; accompanies the "
            "player's line with the other voices",
            voice="antiphon.live.musegan_voice:MuseGANVoice",
            trainer="antiphon.models.musegan_train:train_musegan",
            # The voices' harmony settles later than their pace: at 1,400 steps one seed in
            # four left the soprano and bass in octaves (TD gap 0.24 from scratch); at 3,000
            # every seed tried was closer to the chorales than the paper's model (12
            # to 17 minutes on 2 cores).
            steps=3_000,
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
