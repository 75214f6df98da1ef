"""The shared GAN parts: minibatch discrimination, feature matching, one-sided smoothing, the
skip rule (each branch), diversity on hand-made rolls, and the training log and its plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from antiphon.models.diversity import diversity, mean_distance, roll_of_notes

torch = pytest.importorskip("torch")


def test_minibatch_discrimination_sees_a_collapsed_batch() -> None:
    from antiphon.models.gan import MinibatchDiscrimination

    torch.manual_seed(0)
    layer = MinibatchDiscrimination(6, kernels=4, kernel_dim=3)
    same = torch.ones(5, 6)
    varied = torch.randn(5, 6) * 5
    a, b = layer(same), layer(varied)
    assert a.shape == (5, 10) and layer.out_features == 10
    assert torch.equal(a[:, :6], same)  # the features pass through
    # Five identical samples: each is at distance 0 from the four others, exp(0) = 1.
    assert torch.allclose(a[:, 6:], torch.full((5, 4), 4.0))
    assert (b[:, 6:] < a[:, 6:]).all()
    assert torch.equal(layer(torch.randn(1, 6))[:, 6:], torch.zeros(1, 4))  # alone: zeros


def test_feature_matching_and_mean_bar_known_values() -> None:
    from antiphon.models.gan import feature_matching, mean_matching

    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [0.0, 2.0]], requires_grad=True)  # mean (0, 1)
    assert float(feature_matching(real, fake).detach()) == pytest.approx(8.0)
    feature_matching(real, fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    bars_real = torch.zeros(2, 4)
    bars_real[:, 0] = 1.0  # every real bar sounds its first cell
    assert float(mean_matching(bars_real, torch.zeros(2, 4))) == pytest.approx(1 / 4)


def test_label_smoothing_is_one_sided() -> None:
    from antiphon.models.gan import d_loss, smoothed_targets

    logits = torch.zeros(3)
    assert torch.equal(smoothed_targets(logits, True, 0.1), torch.full((3,), 0.9))
    assert torch.equal(smoothed_targets(logits, False, 0.1), torch.zeros(3))
    # D certain and right: with smoothing it still pays for over-confidence on real data.
    big = torch.full((3,), 20.0)
    assert float(d_loss(big, -big, 0.0)) < 1e-6
    assert float(d_loss(big, -big, 0.1)) > 0.9
    assert float(d_loss(torch.zeros(3), torch.zeros(3), 0.0)) == pytest.approx(0.6931, abs=1e-4)


@pytest.mark.parametrize(
    ("d", "g", "expected"),
    [
        (3.0, 3.0, (True, True)),  # both losses high: both train
        (0.5, 1.5, (False, True)),  # D winning (0.5 < 0.7 * 1.5): D sits out
        (1.5, 0.5, (True, False)),  # G winning: G sits out
        (1.0, 1.2, (True, True)),  # close: both train
        (0.0, 1.0, (False, True)),  # D has nothing left to learn
        (1.0, 0.0, (True, False)),
        (0.0, 0.0, (True, True)),  # never both skipped
    ],
)
def test_skip_rule(d: float, g: float, expected: tuple[bool, bool]) -> None:
    from antiphon.models.gan import SkipRule

    rule = SkipRule()
    rule.update(d, g)
    assert rule.decide() == expected
    assert rule.decide() != (False, False)


def test_skip_rule_reads_moving_averages_and_round_trips() -> None:
    from antiphon.models.gan import SkipRule

    rule = SkipRule(smoothing=0.5)
    rule.update(1.0, 1.0)
    rule.update(0.2, 1.0)  # one lucky batch for D: the average is 0.6, under 0.7 * 1.0
    assert (rule.d, rule.g) == (0.6, 1.0) and rule.decide() == (False, True)
    other = SkipRule()
    other.load_state_dict(rule.state_dict())
    assert other.decide() == rule.decide()


def test_diversity_known_values() -> None:
    bar = np.zeros((16, 4), dtype=bool)
    bar[::4, 0] = True
    other = np.zeros((16, 4), dtype=bool)
    other[::2, 1] = True
    collapsed = np.stack([np.concatenate([bar, bar])] * 4)  # 4 samples x 2 bars, one bar
    d = diversity(collapsed)
    assert d.samples == 4 and d.bars == 8
    assert d.distinct_bars == pytest.approx(1 / 8) and d.mean_distance == 0.0
    varied = np.stack([np.concatenate([bar, other]), np.concatenate([other, bar])])
    d = diversity(varied)
    assert d.distinct_bars == pytest.approx(2 / 4)
    assert d.mean_distance == pytest.approx(1.0)  # never a key at the same step
    half = np.zeros((2, 16, 4), dtype=bool)
    half[0, :4, 0] = True
    half[1, :2, 0] = True
    assert mean_distance(half) == pytest.approx(0.5)  # 2 shared of 4 sounding


def test_roll_of_notes_holds_and_clips() -> None:
    roll = roll_of_notes([(0, 5, 60), (4, 4, 62), (30, 40, 64), (0, 2, 200)], 4, 8, 60, 8)
    assert roll[:, 0].tolist() == [True, False, False, False]  # ticks 0..5: step 0 only
    assert roll[:, 2].tolist() == [True, False, False, False]  # zero length: its onset step
    assert roll[:, 4].tolist() == [False, False, False, True]  # clipped at the end
    assert roll.sum() == 3  # the out-of-range pitch is left out


def test_gan_log_writes_json_and_plot(tmp_path) -> None:
    from antiphon.models.diversity import Diversity
    from antiphon.models.gan_log import GanLog

    log = GanLog(Diversity(8, 16, 0.9, 0.8))
    log.add(10, 1.3, 0.7, Diversity(8, 16, 0.5, 0.4), skipped_d=False)
    log.add(20, 1.1, 0.9, Diversity(8, 16, 0.6, 0.5), skipped_d=True)
    paths = log.write(tmp_path)
    assert [p.name for p in paths] == ["gan-log.json", "gan-training.png"]
    saved = json.loads(paths[0].read_text())
    assert saved["data_diversity"]["distinct_bars"] == 0.9
    assert [r["distinct_bars"] for r in saved["rows"]] == [0.5, 0.6]
    assert paths[1].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert GanLog.from_dict(saved).rows == log.rows
