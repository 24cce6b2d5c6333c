"""Intervals and the wording they allow: hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sage.stats import (
    Interval,
    compare_phrase,
    difference_interval,
    direction_word,
    mean_interval,
    seed_interval,
    statistic_interval,
)
from sage.study.quantities import rfs_interval


def test_bootstrap_of_two_points_spans_both():
    # resampling [0, 1]: means 0 (p=1/4), 0.5 (1/2), 1 (1/4): the 2.5th and 97.5th
    # percentiles are 0 and 1
    iv = mean_interval(np.array([0.0, 1.0]), n_boot=4000)
    assert (iv.value, iv.low, iv.high, iv.n) == (0.5, 0.0, 1.0, 2)
    assert iv.sign == 0 and iv.method == "bootstrap"


def test_constant_values_have_a_point_interval():
    iv = mean_interval(np.full(10, 0.3))
    assert iv.low == iv.high == iv.value == pytest.approx(0.3)


def test_bootstrap_interval_of_a_proportion_matches_the_normal_approximation():
    x = np.r_[np.ones(140), np.zeros(60)]  # 0.7 of 200
    iv = mean_interval(x, n_boot=4000)
    half = 1.959964 * math.sqrt(0.7 * 0.3 / 200)  # 0.0635
    assert iv.low == pytest.approx(0.7 - half, abs=0.012)
    assert iv.high == pytest.approx(0.7 + half, abs=0.012)


def test_pairing_keeps_a_constant_difference_exact():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, 50)
    a = b + 0.1  # every image 0.1 higher: paired, the difference is 0.1 in every resample
    paired = difference_interval(a, b, paired=True)
    assert paired.value == pytest.approx(0.1)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)
    assert paired.sign == 1
    unpaired = difference_interval(a, b, paired=False)  # the images' spread swamps it
    assert unpaired.low < 0 < unpaired.high and unpaired.sign == 0


def test_nan_items_are_dropped_pairwise():
    a = np.array([1.0, np.nan, 1.0, 0.0])
    b = np.array([0.0, 0.0, np.nan, 0.0])
    iv = difference_interval(a, b, paired=True)
    assert iv.n == 2 and iv.value == pytest.approx(0.5)


def test_seed_interval_is_the_t_interval():
    iv = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    half = 4.302652729911275 / math.sqrt(3)
    assert (iv.value, iv.n, iv.method) == (2.0, 3, "seeds")
    assert iv.low == pytest.approx(2 - half) and iv.high == pytest.approx(2 + half)
    one = seed_interval([0.7])
    assert one.value == 0.7 and math.isnan(one.low) and one.sign == 0


def test_statistic_interval_agrees_with_scipy_percentile_bootstrap():
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 2.0, 60)
    iv = statistic_interval(lambda v: np.median(v, axis=-1), [x], seed=3)
    ref = stats.bootstrap(
        (x,),
        np.median,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(3),
    ).confidence_interval
    assert iv.value == pytest.approx(np.median(x))
    assert (iv.low, iv.high) == pytest.approx((ref.low, ref.high), abs=1e-12)


def test_rfs_interval_from_per_image_accuracies():
    import pandas as pd

    # noise on the driver keeps everything right, noise on the background breaks everything:
    # a_fg = 1, a_bg = 0, RFS = (0 − 1) / (2 · min(0.5, 0.5)) = −1 in every resample
    table = pd.DataFrame({"acc_fg": np.ones(20), "acc_bg": np.zeros(20)})
    iv = rfs_interval(table)
    assert iv.value == pytest.approx(-1) and iv.high == pytest.approx(-1) and iv.sign == -1


def test_wording_follows_the_interval():
    clear = Interval(0.31, 0.20, 0.42, 80, "bootstrap")
    assert compare_phrase(clear, "higher by", "lower by") == "higher by 0.31 [0.20, 0.42]"
    below = Interval(-0.31, -0.42, -0.20, 80, "bootstrap")
    assert compare_phrase(below, "higher by", "lower by") == "lower by 0.31 [0.20, 0.42]"
    holds_zero = Interval(0.05, -0.02, 0.12, 80, "bootstrap")
    assert compare_phrase(holds_zero) == "no clear difference (difference +0.05 [-0.02, +0.12])"
    assert direction_word(holds_zero) == "no clear difference"
    assert direction_word(clear) == "higher" and direction_word(below) == "lower"
    empty = Interval(math.nan, math.nan, math.nan, 0, "bootstrap")
    assert compare_phrase(empty).startswith("cannot be compared")
