"""Tiny settings for every registered family: enough to train in seconds on the synthetic
corpus and still play notes. tests/test_families.py fails for a family missing here."""

from __future__ import annotations

# family name -> TrainConfig fields (``model`` holds the family's config overrides)
TINY: dict[str, dict] = {
    "transformer": {
        "steps": 200,
        "batch_size": 8,
        "block_size": 96,
        "lr": 3e-3,
        "warmup": 20,
        "threads": 1,
        "model": {"n_layer": 2, "n_embd": 48, "n_head": 2, "dropout": 0.0},
    },
    "note-rnn": {
        "steps": 150,
        "batch_size": 16,
        "block_size": 32,
        "lr": 1e-2,
        "warmup": 10,
        "threads": 1,  # a 32-unit LSTM step is too small to split; extra threads only wait
        "model": {"hidden": 32},
    },
    # Recurrent nets learn slower than the residual, normalised ones at this scale: a
    # higher rate and one 96-unit layer get them past the bigram in 200 steps.
    **{
        f"token-{cell}": {
            "steps": 200,
            "batch_size": 8,
            "block_size": 96,
            "lr": 1e-2,
            "warmup": 20,
            "threads": 1,  # one 96-unit layer per step: extra threads only wait
            "model": {"n_layer": 1, "n_embd": 96, "n_hidden": 96, "dropout": 0.0},
        }
        for cell in ("rnn", "gru", "lstm")
    },
    "tcn": {  # receptive field 63 tokens
        "steps": 200,
        "batch_size": 8,
        "block_size": 96,
        "lr": 3e-3,
        "warmup": 20,
        "threads": 1,
        "model": {"n_layer": 5, "n_embd": 48, "dropout": 0.0},
    },
    # One head per cell so the shared tests cover both: the NADE head on the GRU, the
    # sigmoid head on the LSTM. Frames of a 1/16 note (2 ticks at tpq 8).
    **{
        f"pianoroll-{cell}": {
            "steps": 150,
            "batch_size": 8,
            "block_size": 64,
            "lr": 3e-3,
            "warmup": 10,
            "threads": 1,
            "model": {"head": head, "n_hidden": 64, "nade_hidden": 32, "dropout": 0.0},
        }
        for cell, head in (("gru", "nade"), ("lstm", "sigmoid"))
    },
    # Valid NLL ~2.4 (bigram 3.0) after 300 steps, ~10 s on one core; the decoder only
    # learns from the part of each window after a random split, hence the extra steps.
    "seq2seq": {
        "steps": 300,
        "batch_size": 8,
        "block_size": 96,
        "lr": 1e-2,
        "warmup": 20,
        "threads": 1,
        "model": {"n_embd": 32, "encoder_hidden": 32, "decoder_hidden": 64, "dropout": 0.0},
    },
    # A 2-bar flat VAE: teacher-forced accuracy ~0.71, sampled ~0.59 after 300 steps (9 s).
    "musicvae": {
        "steps": 300,
        "batch_size": 32,
        "lr": 5e-3,
        "warmup": 20,
        "threads": 1,
        "model": {
            "embedding": 16,
            "encoder_hidden": 48,
            "z_size": 16,
            "decoder_hidden": 64,
            "decoder_layers": 1,
            "max_beta": 0.2,
            "beta_rate": 0.99,
        },
    },
    # Small rolls (2 bars of 16 steps, 24 pitches) so a WGAN-GP step with its 2 critic
    # updates costs milliseconds; 60 steps is enough to play notes in time.
    "musegan": {
        "steps": 60,
        "batch_size": 8,
        "lr": 2e-3,
        "warmup": 5,
        "threads": 1,
        "model": {
            "bars": 2,
            "steps_per_beat": 4,
            "note_steps_per_beat": 2,  # each of its steps held two of the grid's
            "n_pitches": 24,
            "pitch_lo": 48,
            "z_size": 8,
            "g_channels": 16,
            "d_channels": 8,
            "condition": 8,
            "critic_steps": 2,
        },
    },
    # A few hundred GAN steps on the synthetic corpus: enough for bars that sound notes on
    # the chords' tones; the conditioning itself is tested in tests/models/test_midinet.py.
    "midinet": {
        "steps": 150,
        "batch_size": 16,
        "block_size": 16,
        "lr": 1e-3,
        "warmup": 5,
        "threads": 1,
        "model": {"base": 16, "dense": 64, "cond_channels": 8, "d_dense": 32, "noise": 16},
    },
    # Maximum-likelihood pre-training does most of the work at this size; the GAN steps after
    # it exercise the adversarial loop, feature matching and the skip rule.
    "crnn-gan": {
        "steps": 120,
        "batch_size": 8,
        "block_size": 24,
        "lr": 3e-3,
        "warmup": 5,
        "threads": 1,
        "model": {
            "hidden": 32,
            "d_hidden": 16,
            "noise": 8,
            "block_size": 24,
            "pretrain_steps": 80,
            "minibatch_kernels": 4,
        },
    },
}
