"""The incremental paper's angle criterion (section 3, Fig. 2) and the strategies' stopping rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netgrow.errors import NetgrowValueError
from netgrow.strategies.angle import AngleStopping, should_grow, window_angle, window_angles
from netgrow.strategies.rules import MinEpochs, make_rule
from netgrow.train.stopping import Plateau


def rows(accs):
    return [{"epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]


def test_window_angle_matches_least_squares_fit():
    rng = np.random.default_rng(0)
    accs = 0.5 + 0.02 * np.arange(5) + rng.normal(0, 0.005, 5)
    slope = np.polyfit(np.arange(5), 100 * accs, 1)[0]  # percent per epoch
    assert window_angle(accs.tolist()) == pytest.approx(math.degrees(math.atan(slope)), abs=1e-9)
    assert window_angle([0.5, 0.51, 0.52]) == pytest.approx(45.0)  # 1 pp per epoch
    assert window_angle([0.7, 0.7, 0.7]) == 0.0
    assert window_angle([50, 51, 52], scale=1.0) == pytest.approx(45.0)  # already in percent
    assert window_angle([0.6, 0.5]) == pytest.approx(-84.2894, abs=1e-3)  # -10 pp


def test_window_angles_are_non_overlapping_windows():
    accs = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.9]  # last window incomplete
    got = window_angles(accs, ws=3)
    assert len(got) == 2
    assert got[0] == pytest.approx(math.degrees(math.atan(10.0)))
    assert got[1] == 0.0


def test_fires_on_plateau_not_on_steady_climb():
    climb = [0.30 + 0.02 * i for i in range(30)]  # steady 2 pp per epoch
    assert not any(should_grow(climb[:n], ws=3, gamma=0.5) for n in range(1, 31))
    plateau = climb[:9] + [climb[8] + d for d in (0.001, 0.0, 0.002)]  # epochs 10-12 flat
    fired = [n for n in range(1, len(plateau) + 1) if should_grow(plateau[:n], ws=3, gamma=0.5)]
    assert fired == [12]  # the first window end after the curve flattened


def test_fires_when_slope_drops_below_gamma_times_previous():
    # window 1: +3 pp/epoch; window 2: +1 pp/epoch -> alpha_2 ~ 45 deg <= 0.75 * 71.6 deg
    accs = [0.40, 0.43, 0.46, 0.47, 0.48, 0.49]
    a1, a2 = window_angles(accs, 3)
    assert a2 <= 0.75 * a1 and a2 > 0.5 * a1
    assert should_grow(accs, ws=3, gamma=0.75)
    assert not should_grow(accs, ws=3, gamma=0.5)


def test_falling_window_fires_and_first_window_never_does():
    assert not should_grow([0.5, 0.4, 0.3], ws=3, gamma=0.5)  # one window only: nothing to compare
    assert should_grow([0.5, 0.4, 0.3, 0.31, 0.30, 0.29], ws=3, gamma=0.5)  # alpha_2 < 0


def test_only_at_window_ends():
    accs = [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3]
    assert should_grow(accs[:6], ws=3, gamma=0.5)
    assert not should_grow(accs, ws=3, gamma=0.5)  # 7 epochs: mid-window


def test_angle_stopping_rule_on_history_rows():
    rule = AngleStopping(ws=2, gamma=0.5)
    assert not rule(rows([0.1, 0.3]))
    assert not rule(rows([0.1, 0.3, 0.5, 0.7]))
    assert rule(rows([0.1, 0.3, 0.5, 0.7, 0.71, 0.71]))
    assert rule.angles == pytest.approx([window_angle([0.1, 0.3]), window_angle([0.5, 0.7]), 0.0])
    # rows without the key (no test set) are skipped
    assert not rule([{"epoch": 1, "val_acc": None}] * 6)


def test_min_epochs_delays_the_rule():
    accs = rows([0.5, 0.6, 0.6, 0.6])
    assert make_rule("plateau", patience=2)(accs)
    assert not make_rule("plateau", patience=2, min_epochs=5)(accs)
    assert isinstance(make_rule("angle", min_epochs=3), MinEpochs)
    assert isinstance(make_rule("plateau"), Plateau)
    assert make_rule("budget") is None


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: window_angle([0.5]), "at least 2 accuracies"),
        (lambda: should_grow([0.1] * 6, ws=1, gamma=0.5), "window size ws must be an integer >= 2"),
        (lambda: should_grow([0.1] * 6, ws=3, gamma=1.5), r"gamma must be in \[0, 1\], got 1.5"),
        (lambda: AngleStopping(ws=3, gamma=-0.1), r"gamma must be in \[0, 1\]"),
        (lambda: AngleStopping(ws=2.5), "window size ws"),
        (lambda: make_rule("patience"), "unknown stopping rule 'patience'; allowed: budget, plateau, angle"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(NetgrowValueError, match=match):
        call()
