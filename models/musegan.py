"""MuseGAN (Dong et al. 2018), the hybrid model: multi-track piano rolls from latents, WGAN-GP.

A sample is ``tracks x bars x steps x pitches`` (the four voices of a chorale as tracks; 4
bars of 4 beats, 12 steps a beat, 48 pitches from C2 by default — published: 5 tracks, 96
steps a bar, 84 pitches). The hybrid generator takes four latents: one shared by the tracks
and one per track (inter- and intra-track), each both time-independent and, through a
temporal generator, one vector per bar. A private bar generator per track (2-D transposed
convolutions, growing time first and then pitch an octave at a time, as the paper's: a 3-D
generator over bars too cost several times as much on a CPU, and the temporal generator
already gives each bar its own input) turns its bar's vectors into that bar's roll.

Departures from the paper, for voices like a chorale's, each by config (all off gives the
paper's form back: ``note_steps_per_beat = steps_per_beat``, ``monophonic``,
``shared_generator``, ``given_classes``, ``harmonize_lead``, ``harmonize_chain``,
``critic_chroma`` and ``critic_onsets`` false):

- the bar generator writes at the data's note grid (``note_steps_per_beat``, chosen by
  ``train`` from the data: quarters for JSB's chorales), each step held over the grid's
  steps of it; the paper's LPD tracks are at 24 steps a beat, every step free;
- each track is monophonic (``monophonic``: a softmax over its keys and a rest a step, in
  place of a sigmoid a key, for the paper's polyphonic piano, guitar and strings);
- BinaryMuseGAN's shared/private generators (Dong & Yang 2018): a generator shared by the
  tracks writes features of each bar over time and octaves that join every track's own
  before they spread to keys (``shared_generator``);
- the harmony: the given track's pitch classes, step by step, reach every track's keys
  directly (``given_classes``), and from scratch the lead track is written first and the
  others harmonise it as written (``harmonize_lead``): a top line, then its harmony; the
  harmony's voices are written one after another, bass first, each hearing the classes of
  those before it (``harmonize_chain``);
- BinaryMuseGAN's chroma and onset/offset streams in the critic, the chroma stream with
  the interval classes between every pair of tracks (``critic_chroma``, ``critic_onsets``).

Accompaniment ("track-conditional" MuseGAN): a bar encoder reads the given track's roll
(the player's line) and its features join every track's input; with ``given = 0`` the
model generates from scratch. Training mixes both (``accompany_rate``); in a conditioned
batch the critic sees the real given track in place of the generated one.

The critic (``Critic``, trained beside the generator, not exported): per bar, 2-D
convolutions over time x pitch with the tracks as channels, with its streams, then a dense
layer over the bars' features; the WGAN-GP loss (``gp_weight``, ``critic_steps`` critic
updates per generator update). The critic judges generated rolls binarised, as the data's
keys are, the gradient passing straight through (``binarize``). The generator outputs key
probabilities: drawing or thresholding notes from them is the caller's
(``live.musegan_voice``), as is drawing the latents.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from antiphon.errors import UserError
from antiphon.models.wholebatch import WholeBatchNorm2d


@dataclass
class MuseGANConfig:
    tracks: int = 4
    bars: int = 4
    beats_per_bar: int = 4
    steps_per_beat: int = 12
    pitch_lo: int = 36
    n_pitches: int = 48  # published: 84
    z_size: int = 32  # each of the four latents
    g_channels: int = 32  # the bar generator's widest layer (sized for 2 cores)
    d_channels: int = 16  # the critic's first layer, doubling with each halving
    condition: int = 32  # features of the given track, per bar
    gp_weight: float = 10.0
    critic_steps: int = 5
    accompany_track: int = 0  # the track the player plays (0: the top voice)
    accompany_rate: float = 0.5  # share of training batches conditioned on the real track
    # The finest note the generator writes, per beat: each of its steps is held over
    # steps_per_beat / note_steps_per_beat steps of the grid (4: sixteenths, each three of
    # the grid's twelve), so no note it writes is shorter. 0 (the default): the coarsest
    # grid that holds the training data's notes (``models.midi.multitrack.note_grid``),
    # chosen by ``train`` and written into the model; steps_per_beat (the paper's): every
    # grid step its own. A generator free to switch a key at every 1/48 of a bar broke held
    # notes into fragments; one writing sixteenths for JSB's chorales (every note a quarter
    # or longer, as quantised for the benchmarks) struck 6-13 notes a bar where the data
    # has 2.5-3: a voice running in sixteenths under a hymn.
    note_steps_per_beat: int = 0
    # Each track one key at a time, as a chorale voice sings: a softmax over its keys and a
    # rest per step, so at most one key is over 1/2. False (the paper's, for polyphonic
    # tracks such as a piano): each key its own sigmoid.
    monophonic: bool = True
    # A generator shared by the tracks (BinaryMuseGAN's shared/private design): its features
    # of each bar, over time and octaves, from the inputs common to all tracks, join each
    # track's own before they spread to keys, so the voices draw on one plan of the bar.
    # False: the paper's hybrid, each track's bar generator on its own, the tracks tied
    # only by the latents they share.
    shared_generator: bool = True
    # The given track's pitch classes, step by step, join every track's features where they
    # spread to keys (each class to a pattern of keys: a consonance table the generator can
    # learn directly). Through the condition encoder's 32 features a bar alone, the voices
    # accompanying the data's soprano sat further from it in tonal distance than voices of
    # another chorale would (2.1-2.3 against 1.85; the data's 1.5-1.9).
    given_classes: bool = True
    # From scratch, the lead track (``accompany_track``) is written first and the others
    # harmonise its pitch classes as they would a given line: a top line, then its
    # harmony. Without it, from scratch the voices sat as far apart in tonal distance as
    # voices of different chorales put together (1.9 against 1.85; the data's 1.4-1.9).
    harmonize_lead: bool = True
    # The voices that harmonise the lead (or the given line) are written one after another,
    # outer voice first (the lowest, then upwards), each hearing the pitch classes of the
    # harmony written before it beside the lead's: a bass under the tune, then the inner
    # voices filling the chord they make. Written side by side, the voices accompanying the
    # data's soprano each followed the soprano but not one another (mean tonal distance
    # 1.65-1.84 against the data's 1.61). With ``given_classes`` (the classes it passes on).
    harmonize_chain: bool = True
    # "factored": the bar grows along time first, then along pitch an octave at a time, as
    # the paper's generator does; "square": 4x4 transposed convolutions over both at once.
    bar_generator: str = "factored"
    # BatchNorm in the generator, as the paper has it (the critic never: WGAN-GP). Off by
    # default: 1,400 steps with it used 5.4 pitch classes a bar against the data's 2.6, and
    # 2.4 without, as diverse either way, and no train/eval difference to export.
    batchnorm: bool = False
    # What the critic sees of a generated roll: "st", keys binarised at 1/2 with the
    # gradient of the probabilities passed straight through (Dong & Yang 2018's binary
    # neurons), so it judges rolls like the data's; "soft": the probabilities themselves.
    binarize: str = "st"
    # A chroma stream beside the critic's convolutions (Dong & Yang 2018's BinaryMuseGAN
    # adds one): each track's pitch classes beat by beat, all tracks side by side, and the
    # interval classes between each pair of tracks, so the critic hears which classes
    # sound together in any key (``ChromaStream``). Its convolutions see the tracks as
    # channels over a few keys at a time: an octave or a tenth between two voices is out
    # of their first layers' reach, and the generated voices sat further apart in tonal
    # distance (Harte et al.) than the chorales' (TD gap 0.24 against the paper's 0.21).
    critic_chroma: bool = True
    # An onset/offset stream (BinaryMuseGAN's other one): where each track's notes start
    # and end, summed over pitch, step by step. The critic's convolutions did not hold the
    # generator to the chorales' pace: its voices struck 8-13 notes a bar against the
    # data's 2.5-3 (a voice running in sixteenths under a hymn).
    critic_onsets: bool = True

    def __post_init__(self) -> None:
        n = self.note_steps_per_beat
        if n < 0 or (n and self.steps_per_beat % n):
            raise UserError(
                f"note_steps_per_beat must divide steps_per_beat ({self.steps_per_beat}), not {n}"
            )
        if self.bar_generator not in ("factored", "square"):
            raise UserError(f"bar_generator: 'factored' or 'square', not {self.bar_generator!r}")
        if self.monophonic and self.bar_generator == "square":
            raise UserError("a monophonic bar needs bar_generator=factored (or monophonic=false)")
        if (self.shared_generator or self.given_classes) and self.bar_generator == "square":
            raise UserError("a shared generator and the given classes need bar_generator=factored")

    @property
    def steps(self) -> int:
        return self.beats_per_bar * self.steps_per_beat

    @property
    def hold(self) -> int:
        """Grid steps each of the generator's steps is held over (1 while the note grid is
        still to be chosen from the data)."""
        return self.steps_per_beat // (self.note_steps_per_beat or self.steps_per_beat)

    @property
    def note_steps(self) -> int:
        """The generator's own steps a bar."""
        return self.steps // self.hold

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MuseGANConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def written(cls, d: dict) -> MuseGANConfig:
        """The config a checkpoint was written with: it holds every field of its day, so a
        field it lacks was added since, and takes the value the model then had."""
        before = dict.fromkeys(
            ("monophonic", "shared_generator", "given_classes", "harmonize_lead",
             "harmonize_chain", "critic_chroma", "critic_onsets"),
            False,
        )  # fmt: skip
        before["note_steps_per_beat"] = d.get("steps_per_beat", cls.steps_per_beat)
        return cls.from_dict({**before, **d})


def pitch_classes(c: MuseGANConfig) -> torch.Tensor:
    """(pitches, 12): each key of the roll to its pitch class (a chroma is ``roll @ this``)."""
    keys = torch.arange(c.n_pitches)
    fold = torch.zeros(c.n_pitches, 12)
    fold[keys, (c.pitch_lo + keys) % 12] = 1.0
    return fold


def _ups(steps: int, pitches: int) -> int:
    """How many stride-2 layers take (steps, pitches) down to a small seed: both must halve
    evenly that many times."""
    n = 0
    while steps % 2 == 0 and pitches % 2 == 0 and min(steps, pitches) > 4 and n < 4:
        steps, pitches, n = steps // 2, pitches // 2, n + 1
    return n


def _halvings(n: int, most: int = 4) -> int:
    k = 0
    while n % 2 == 0 and n > 1 and k < most:
        n, k = n // 2, k + 1
    return k


class BarGenerator(nn.Module):
    """(N, features) -> (N, note_steps, pitches) logits of one track's bar, and with
    ``monophonic`` (N, note_steps, pitches + 1): the last a rest.

    Factored (the default, after the paper's): a seed of a few steps by one unit per octave,
    doubled along time by kernels as long as their stride (each step of the seed becomes
    two, never overlapping: no checkerboard of half-struck keys across a held note), then
    spread along pitch, each octave unit to its 12 keys, and mixed across neighbouring keys;
    the rest of each step is read from the same features pooled over pitch.
    The square form (4x4 kernels over time and pitch at once) broke held notes into single
    steps: none of its notes lasted two steps of the chorales' twelve a beat."""

    def __init__(self, c: MuseGANConfig, features: int, shared: int = 0, head: bool = True) -> None:
        """``shared``: channels joined to this track's features before they spread over
        pitch (the shared generator's, and the given line's 12 pitch classes); ``head=False``:
        stop there (the shared generator is this, without keys)."""
        super().__init__()
        norm = (lambda ch: WholeBatchNorm2d(ch)) if c.batchnorm else (lambda ch: nn.Identity())
        layers: list[nn.Module] = []
        pitch: list[nn.Module] = []
        steps = c.note_steps
        self.rest: nn.Module | None = None
        if c.bar_generator == "square":
            n = _ups(steps, c.n_pitches)
            self.seed = (steps >> n, c.n_pitches >> n)
            ch = [max(c.g_channels >> i, 8) for i in range(n)] + [1]
            for i in range(n - 1):
                layers += [nn.ConvTranspose2d(ch[i], ch[i + 1], 4, stride=2, padding=1),
                           norm(ch[i + 1]), nn.ReLU()]  # fmt: skip
            self.keys: nn.Module = (
                nn.ConvTranspose2d(ch[n - 1], 1, 4, stride=2, padding=1) if n else nn.Identity()
            )
        elif c.bar_generator == "factored":
            nt = _halvings(steps)
            octave = 12 if c.n_pitches % 12 == 0 else c.n_pitches
            self.seed = (steps >> nt, c.n_pitches // octave)
            ch = [max(c.g_channels >> (i // 2), 8) for i in range(nt + 1)]
            for i in range(nt):
                layers += [nn.ConvTranspose2d(ch[i], ch[i + 1], (2, 1), stride=(2, 1)),
                           norm(ch[i + 1]), nn.ReLU()]  # fmt: skip
            last = self.channels = ch[nt]
            spread = nn.ConvTranspose2d(last + shared, last, (1, octave), stride=(1, octave))
            pitch = [spread, norm(last), nn.ReLU()] if head else []
            self.keys = nn.Conv2d(last, 1, (1, 7), padding=(0, 3)) if head else nn.Identity()
            if c.monophonic and head:
                self.rest = nn.Conv1d(last, 1, 1)
        else:
            raise ValueError(f"bar_generator: 'factored' or 'square', not {c.bar_generator!r}")
        self.fc = nn.Sequential(
            nn.Linear(features, ch[0] * self.seed[0] * self.seed[1]),
            nn.Unflatten(1, (ch[0], *self.seed)),
            norm(ch[0]),
            nn.ReLU(),
        )
        self.net = nn.Sequential(*layers)
        self.pitch = nn.Sequential(*pitch)

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # Models written before the pitch layers had their own Sequential kept them at the
        # end of ``net``: net.{len(net) + j} is pitch.{j}.
        n = len(self.net)
        for key in [k for k in state_dict if k.startswith(prefix + "net.")]:
            index, _, rest = key[len(prefix) + 4 :].partition(".")
            if index.isdigit() and int(index) >= n:
                state_dict[f"{prefix}pitch.{int(index) - n}.{rest}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, v: torch.Tensor, shared: torch.Tensor | None = None) -> torch.Tensor:
        """``shared``: (N, channels, note_steps, octaves), see ``__init__``."""
        h = self.net(self.fc(v))  # factored: (N, channels, note_steps, octaves)
        if shared is not None:
            h = torch.cat((h, shared), dim=1)
        h = self.pitch(h)  # (N, channels, note_steps, pitches)
        if isinstance(self.keys, nn.Identity):
            return h
        keys = self.keys(h).squeeze(1)
        if self.rest is None:
            return keys
        rest = self.rest(h.mean(dim=3)).transpose(1, 2)  # (N, note_steps, 1)
        return torch.cat((keys, rest), dim=2)


class BarEncoder(nn.Module):
    """(N, in_channels, steps, pitches) -> (N, out) features of a bar (the critic's and the
    condition encoder's first stage)."""

    def __init__(self, c: MuseGANConfig, in_channels: int, width: int, out: int) -> None:
        super().__init__()
        n = _ups(c.steps, c.n_pitches)
        ch = [in_channels] + [width << i for i in range(n)]
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [nn.Conv2d(ch[i], ch[i + 1], 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(ch[-1] * (c.steps >> n) * (c.n_pitches >> n), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.net(x).flatten(1))


class MuseGAN(nn.Module):
    """The generator (the exported model; the critic is ``Critic``, training's alone)."""

    def __init__(self, config: MuseGANConfig) -> None:
        super().__init__()
        self.config = c = config
        Z, bars = c.z_size, c.bars
        self.temporal_shared = nn.Sequential(nn.Linear(Z, bars * Z), nn.ReLU())
        self.temporal_private = nn.ModuleList(
            nn.Sequential(nn.Linear(Z, bars * Z), nn.ReLU()) for _ in range(c.tracks)
        )
        self.condition_encoder = BarEncoder(c, 1, 8, c.condition)
        features = 4 * Z + c.condition + 1
        self.shared: BarGenerator | None = None
        # the harmony written so far joins each track's classes (harmonize_chain)
        self.chain = c.given_classes and c.harmonize_chain
        width = 12 * (c.given_classes + self.chain)
        if c.shared_generator:
            self.shared = BarGenerator(c, 2 * Z + c.condition + 1, head=False)
            width += self.shared.channels
        octave = 12 if c.n_pitches % 12 == 0 else c.n_pitches
        fold = pitch_classes(c)
        self.register_buffer("fold", fold, persistent=False)
        self.octaves = c.n_pitches // octave
        self.generators = nn.ModuleList(
            BarGenerator(c, features, shared=width) for _ in range(c.tracks)
        )

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        z_shared: torch.Tensor,  # (B, Z) inter-track, time-independent
        z_shared_t: torch.Tensor,  # (B, Z) inter-track, through the temporal generator
        z_private: torch.Tensor,  # (B, tracks, Z) intra-track, time-independent
        z_private_t: torch.Tensor,  # (B, tracks, Z) intra-track, temporal
        condition: torch.Tensor,  # (B, bars, steps, pitches) the given track's roll
        given: torch.Tensor,  # (B,) 1: accompany ``condition``, 0: from scratch
    ) -> torch.Tensor:
        """Key probabilities (B, tracks, bars, steps, pitches)."""
        c = self.config
        B, Z, bars = z_shared.shape[0], c.z_size, c.bars
        shared_t = self.temporal_shared(z_shared_t).view(B, bars, Z)
        cond = self.condition_encoder(condition.reshape(B * bars, 1, c.steps, c.n_pitches))
        flag = given.view(B, 1, 1).expand(B, bars, 1)
        cond = cond.view(B, bars, c.condition) * flag  # (B, bars, C); nothing when not given
        common = torch.cat((z_shared.unsqueeze(1).expand(B, bars, Z), shared_t, cond, flag), -1)
        trunk = None if self.shared is None else self.shared(common.reshape(B * bars, -1))
        given_classes = None
        if c.given_classes:
            # The given line's pitch classes each generator step (the share of it each
            # sounds): what the voices harmonise, key for key.
            line = condition.reshape(B * bars, c.note_steps, c.hold, c.n_pitches).sum(2)
            given_classes = (line @ self.fold) / c.hold * flag.reshape(B * bars, 1, 1)

        def track(t: int, classes: torch.Tensor | None) -> torch.Tensor:
            """Track ``t``'s probabilities (B * bars, note_steps, pitches)."""
            private_t = self.temporal_private[t](z_private_t[:, t]).view(B, bars, Z)
            v = torch.cat(
                (
                    z_shared.unsqueeze(1).expand(B, bars, Z),
                    shared_t,
                    z_private[:, t].unsqueeze(1).expand(B, bars, Z),
                    private_t,
                    cond,
                    flag,
                ),
                dim=-1,
            ).reshape(B * bars, -1)  # (B * bars, 4Z + C + 1)
            joined = [] if trunk is None else [trunk]
            if classes is not None:  # beside every octave unit
                at = classes.transpose(1, 2).unsqueeze(-1)
                joined.append(at.expand(B * bars, classes.shape[-1], c.note_steps, self.octaves))
            logits = self.generators[t](v, torch.cat(joined, dim=1) if joined else None)
            if c.monophonic:
                return torch.softmax(logits, dim=-1)[..., : c.n_pitches]
            return torch.sigmoid(logits)

        lead = c.accompany_track
        probs: list[torch.Tensor | None] = [None] * c.tracks
        written = None  # the pitch classes of the harmony written so far (harmonize_chain)
        if given_classes is not None and self.chain:
            written = torch.zeros_like(given_classes)
        probs[lead] = track(lead, _beside(given_classes, written))
        classes = given_classes
        if given_classes is not None and c.harmonize_lead:
            # From scratch the others harmonise the lead voice as written (its keys at
            # temperature 0, the gradient passed straight through), as they would a
            # given line; given, the given line.
            played = binarized(probs[lead], "st", c.monophonic) @ self.fold
            keep = flag.reshape(B * bars, 1, 1)
            classes = keep * given_classes + (1 - keep) * played
        for t in reversed(range(c.tracks)) if written is not None else range(c.tracks):
            if t == lead:
                continue
            probs[t] = track(t, _beside(classes, written))
            if written is not None:
                written = written + binarized(probs[t], "st", c.monophonic) @ self.fold
        out = torch.stack([p for p in probs if p is not None], dim=1)  # (B * bars, tracks, ...)
        out = out.view(B, bars, c.tracks, c.note_steps, c.n_pitches).transpose(1, 2)
        return held(out, c.hold)

    def latents(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        c = self.config
        shapes = [(batch, c.z_size), (batch, c.z_size), (batch, c.tracks, c.z_size),
                  (batch, c.tracks, c.z_size)]  # fmt: skip
        return [torch.randn(s, generator=generator) for s in shapes]


class ChromaStream(nn.Module):
    """(N, tracks, steps, pitches) bars -> (N, out): each track's pitch classes a beat
    (the share of the beat each class sounds), and for every pair of tracks the interval
    classes between them that beat (how much of the beat a sounds k semitones above b,
    octaves folded), judged beat by beat (kernel 1: what sounds together) and then across
    the bar. The intervals are the same in every key, as harmony is: with the pitch classes
    alone, 1,400 and 4,000 steps on JSB left the voices further apart in tonal distance
    than voices of different chorales put together (1.9-2.0 against 1.8-1.9, the data's
    1.4-1.9), the critic having to learn each consonance in twelve keys."""

    def __init__(self, c: MuseGANConfig, width: int = 32, out: int = 32) -> None:
        super().__init__()
        self.c = c
        fold = pitch_classes(c)
        self.register_buffer("fold", fold / c.steps_per_beat, persistent=False)
        # up[k, p] = (p + k) % 12: row k of a chroma read k semitones up
        up = (torch.arange(12).view(1, 12) + torch.arange(12).view(12, 1)) % 12
        self.register_buffer("up", up, persistent=False)
        channels = c.tracks * 12 + c.tracks * (c.tracks - 1) // 2 * 12
        self.beat = nn.Sequential(
            nn.Conv1d(channels, width, 1), nn.LeakyReLU(0.2),
            nn.Conv1d(width, width, 1), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.fc = nn.Linear(width * c.beats_per_bar, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.c
        N, T, B = x.shape[0], c.tracks, c.beats_per_bar
        beats = x.reshape(N, T, B, c.steps_per_beat, c.n_pitches).sum(3)
        classes = beats @ self.fold  # (N, tracks, beats, 12)
        shifted = classes[..., self.up]  # (N, tracks, beats, 12 k, 12 p): class p + k
        a, b = torch.triu_indices(T, T, offset=1, device=x.device)
        # intervals[n, pair, beat, k] = sum_p classes[n, b, beat, p] * classes[n, a, beat, p + k]
        intervals = torch.einsum("nqbp,nqbkp->nqbk", classes[:, b], shifted[:, a])
        feats = torch.cat((classes, intervals), dim=1)  # (N, tracks + pairs, beats, 12)
        feats = feats.permute(0, 1, 3, 2).reshape(N, -1, B)
        return self.fc(self.beat(feats).flatten(1))


class OnsetStream(nn.Module):
    """(N, tracks, steps, pitches) bars -> (N, out): each track's onsets and offsets a step
    (keys that begin or end sounding there, summed over pitch: two channels a track, so a
    voice stepping from one key to the next shows both), judged half a beat at a time."""

    def __init__(self, c: MuseGANConfig, width: int = 32, out: int = 32) -> None:
        super().__init__()
        self.c = c
        k, stride = c.steps_per_beat, max(c.steps_per_beat // 2, 1)
        self.net = nn.Sequential(nn.Conv1d(2 * c.tracks, width, k, stride=stride),
                                 nn.LeakyReLU(0.2))  # fmt: skip
        self.fc = nn.Linear(width * ((c.steps - k) // stride + 1), out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N = x.shape[0]
        d = torch.diff(x, dim=2, prepend=torch.zeros_like(x[:, :, :1]))  # (N, tracks, steps, P)
        edges = torch.stack((torch.relu(d).sum(3), torch.relu(-d).sum(3)), dim=2)
        return self.fc(self.net(edges.reshape(N, 2 * self.c.tracks, -1)).flatten(1))


class Critic(nn.Module):
    """Per bar, 2-D convolutions over time x pitch with the tracks as channels, and by
    config the tracks' pitch classes beat by beat (``ChromaStream``) and their onsets and
    offsets step by step (``OnsetStream``); a dense layer over the bars' features gives the
    WGAN score."""

    def __init__(self, config: MuseGANConfig) -> None:
        super().__init__()
        self.config = c = config
        self.bars = BarEncoder(c, c.tracks, c.d_channels, 64)
        self.chroma = ChromaStream(c) if c.critic_chroma else None
        self.onsets = OnsetStream(c) if c.critic_onsets else None
        width = 64 + 32 * ((self.chroma is not None) + (self.onsets is not None))
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(c.bars * width, 1))

    def forward(self, rolls: torch.Tensor) -> torch.Tensor:
        """(B, tracks, bars, steps, pitches) in [0, 1] -> (B,) scores."""
        c = self.config
        B = rolls.shape[0]
        x = rolls.transpose(1, 2).reshape(B * c.bars, c.tracks, c.steps, c.n_pitches)
        h = self.bars(x)
        streams = [s(x) for s in (self.chroma, self.onsets) if s is not None]
        if streams:
            h = torch.cat((h, *streams), dim=1)
        return self.out(h.view(B, -1)).squeeze(-1)


def _beside(classes: torch.Tensor | None, written: torch.Tensor | None) -> torch.Tensor | None:
    """The pitch classes a track is written to: the lead's, and the harmony's before it."""
    if classes is None or written is None:
        return classes
    return torch.cat((classes, written), dim=-1)


def held(probs: torch.Tensor, hold: int) -> torch.Tensor:
    """(..., note_steps, pitches) -> (..., note_steps * hold, pitches): each step held
    over ``hold`` grid steps (an expand and a reshape: plain ONNX ops)."""
    if hold == 1:
        return probs
    *lead, steps, pitches = probs.shape
    out = probs.unsqueeze(-2).expand(*lead, steps, hold, pitches)
    return out.reshape(*lead, steps * hold, pitches)


def binarized(probs: torch.Tensor, how: str, monophonic: bool = False) -> torch.Tensor:
    """What the critic sees of generated key probabilities (see ``MuseGANConfig.binarize``):
    the keys the voice would play at temperature 0 (``models.midi.multitrack.keys_down``: over
    1/2, or a monophonic track's likeliest key or rest), the gradient of the probabilities
    passed straight through. Soft rolls against the data's 0/1 keys let the critic win on
    blur alone: the soft runs ended with no key over 1/2 anywhere (every bar empty once
    played) while the critic's margin stayed at 30 and more. A monophonic track judged at
    1/2 stayed silent: a softmax over 49 choices starts near 1/49 each, no key reached 1/2,
    and the critic won on empty voices (two of four empty in every bar after 1,400 steps)."""
    if how == "soft":
        return probs
    if how != "st":
        raise ValueError(f"binarize: 'st' or 'soft', not {how!r}")
    if monophonic:
        choices = torch.cat((probs, 1.0 - probs.sum(dim=-1, keepdim=True)), dim=-1)
        best = choices.argmax(dim=-1, keepdim=True)  # the last: the rest
        hard = torch.zeros_like(choices).scatter(-1, best, 1.0)[..., : probs.shape[-1]]
    else:
        hard = (probs > 0.5).to(probs.dtype)
    return probs + (hard - probs).detach()


def gradient_penalty(
    critic: Critic,
    real: torch.Tensor,
    fake: torch.Tensor,
    a: torch.Tensor | None = None,
    *,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scale: float = 1.0,
) -> torch.Tensor:
    """WGAN-GP: (||grad D(x)|| - 1)^2 at random points between real and fake samples, at
    ``a`` of the way from fake to real (drawn here where not given: a rank of a shared batch
    is given its rows of the whole batch's draw). Mixed precision as PyTorch's AMP recipe
    for gradient penalties has it: the critic runs under ``autocast``, its gradient is taken
    of its output times ``scale`` (fp16's loss scale: small gradients would flush to zero)
    outside autocast, and unscaled to fp32 before the norm."""
    if a is None:
        a = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x = (a * real + (1 - a) * fake).float().requires_grad_(True)
    with autocast():
        out = critic(x).float().sum()
    (grad,) = torch.autograd.grad(out * scale, x, create_graph=True)
    grad = grad.float() / scale
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
