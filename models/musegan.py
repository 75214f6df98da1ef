"""MuseGAN (Dong et al. 2018), the hybrid model: multi-track piano rolls from latents, WGAN-GP.

A sample is ``tracks x bars x steps x pitches`` (the four voices of a chorale as tracks; 4
bars of 4 beats, 12 steps a beat, 48 pitches from C2 by default — published: 5 tracks, 96
steps a bar, 84 pitches). The hybrid generator takes four latents: one shared by the tracks
and one per track (inter- and intra-track), each both time-independent and, through a
temporal generator, one vector per bar. A private bar generator per track (2-D transposed
convolutions, growing time first and then pitch an octave at a time, as the paper's: a 3-D
generator over bars too cost several times as much on a CPU, and the temporal generator
already gives each bar its own input) turns its bar's vectors into that bar's roll.

Two departures from the paper, both for voices like a chorale's and both by config: the bar
generator writes sixteenths (``note_steps_per_beat``), each held over the grid's steps of
it, and each track is monophonic (``monophonic``: a softmax over its keys and a rest a
step, in place of a sigmoid a key). The paper's LPD tracks are polyphonic (piano, guitar,
strings) at 24 steps a beat; ``note_steps_per_beat = steps_per_beat`` and
``monophonic = false`` give its form back.

Accompaniment ("track-conditional" MuseGAN): a bar encoder reads the given track's roll
(the player's line) and its features join every track's input; with ``given = 0`` the
model generates from scratch. Training mixes both (``accompany_rate``); in a conditioned
batch the critic sees the real given track in place of the generated one.

The critic (``Critic``, trained beside the generator, not exported): per bar, 2-D
convolutions over time x pitch with the tracks as channels, then a dense layer over the
bars' features; the WGAN-GP loss (``gp_weight``, ``critic_steps``
critic updates per generator update). The critic judges generated rolls binarised, as the
data's keys are, the gradient passing straight through (``binarize``). The generator
outputs key probabilities: drawing
or thresholding notes from them is the caller's (``live.musegan_voice``), as is drawing
the latents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from antiphon.errors import UserError


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
    # the grid's twelve), so no note it writes is shorter. steps_per_beat (the paper's):
    # every grid step its own. A generator free to switch a key at every 1/48 of a bar
    # broke held notes into fragments: a fifth to a half of its notes a 32nd or shorter,
    # against none in the chorales (whose shortest notes are sixteenths).
    note_steps_per_beat: int = 4
    # Each track one key at a time, as a chorale voice sings: a softmax over its keys and a
    # rest per step, so at most one key is over 1/2. False (the paper's, for polyphonic
    # tracks such as a piano): each key its own sigmoid.
    monophonic: bool = True
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

    def __post_init__(self) -> None:
        n = self.note_steps_per_beat
        if n < 1 or self.steps_per_beat % n:
            raise UserError(
                f"note_steps_per_beat must divide steps_per_beat ({self.steps_per_beat}), not {n}"
            )
        if self.bar_generator not in ("factored", "square"):
            raise UserError(f"bar_generator: 'factored' or 'square', not {self.bar_generator!r}")
        if self.monophonic and self.bar_generator == "square":
            raise UserError("a monophonic bar needs bar_generator=factored (or monophonic=false)")

    @property
    def steps(self) -> int:
        return self.beats_per_bar * self.steps_per_beat

    @property
    def hold(self) -> int:
        """Grid steps each of the generator's steps is held over."""
        return self.steps_per_beat // self.note_steps_per_beat

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

    def __init__(self, c: MuseGANConfig, features: int) -> None:
        super().__init__()
        norm = (lambda ch: nn.BatchNorm2d(ch)) if c.batchnorm else (lambda ch: nn.Identity())
        layers: list[nn.Module] = []
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
            last = ch[nt]
            spread = nn.ConvTranspose2d(last, last, (1, octave), stride=(1, octave))
            layers += [spread, norm(last), nn.ReLU()]
            self.keys = nn.Conv2d(last, 1, (1, 7), padding=(0, 3))
            if c.monophonic:
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

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        h = self.net(self.fc(v))  # (N, channels, note_steps, pitches)
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
        self.generators = nn.ModuleList(BarGenerator(c, features) for _ in range(c.tracks))

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
        outs = []
        for t, (temporal, gen) in enumerate(zip(self.temporal_private, self.generators)):
            private_t = temporal(z_private_t[:, t]).view(B, bars, Z)
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
            )  # (B, bars, 4Z + C + 1)
            outs.append(gen(v.reshape(B * bars, -1)).view(B, bars, c.note_steps, -1))
        logits = torch.stack(outs, dim=1)  # (B, tracks, bars, note_steps, keys [+ rest])
        if c.monophonic:
            probs = torch.softmax(logits, dim=-1)[..., : c.n_pitches]
        else:
            probs = torch.sigmoid(logits)
        return held(probs, c.hold)

    def latents(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        c = self.config
        shapes = [(batch, c.z_size), (batch, c.z_size), (batch, c.tracks, c.z_size),
                  (batch, c.tracks, c.z_size)]  # fmt: skip
        return [torch.randn(s, generator=generator) for s in shapes]


class Critic(nn.Module):
    """Per bar, 2-D convolutions over time x pitch with the tracks as channels; a dense
    layer over the bars' features gives the WGAN score."""

    def __init__(self, config: MuseGANConfig) -> None:
        super().__init__()
        self.config = c = config
        self.bars = BarEncoder(c, c.tracks, c.d_channels, 64)
        self.out = nn.Sequential(nn.LeakyReLU(0.2), nn.Linear(c.bars * 64, 1))

    def forward(self, rolls: torch.Tensor) -> torch.Tensor:
        """(B, tracks, bars, steps, pitches) in [0, 1] -> (B,) scores."""
        c = self.config
        B = rolls.shape[0]
        x = rolls.transpose(1, 2).reshape(B * c.bars, c.tracks, c.steps, c.n_pitches)
        return self.out(self.bars(x).view(B, -1)).squeeze(-1)


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


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: (||grad D(x)|| - 1)^2 at random points between real and fake samples."""
    a = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    x = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
