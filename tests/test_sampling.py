"""The curriculum samplers and the TRL sampler layout."""

import json
import math

import numpy as np
import pytest
from trl.trainer.utils import RepeatSampler

from gainrl_ops.training.sampling import (
    GainRLConfig,
    GainRLSampler,
    UniformSampler,
    gaussian_weights,
    mu_adjustment,
)
from gainrl_ops.training.trainer import CurriculumSampler


def test_selection_frequency_follows_the_gaussian_over_ranks() -> None:
    n, draws = 400, 3000
    config = GainRLConfig(sigma=40.0, subset_size=1, mu0=150.0)
    curriculum = GainRLSampler(config, n, seed=0)
    counts = np.bincount([curriculum.select(epoch)[0] for epoch in range(draws)], minlength=n)
    expected = gaussian_weights(n, 150.0, 40.0) * draws
    # Compare in bins of 20 ranks: a chi-square test with 19 degrees of freedom.
    observed_bins, expected_bins = counts.reshape(20, 20).sum(1), expected.reshape(20, 20).sum(1)
    keep = expected_bins > 5
    chi2 = (((observed_bins - expected_bins) ** 2) / expected_bins)[keep].sum()
    assert chi2 < 40, chi2  # p ~ 0.003 at 19 dof
    assert abs(np.average(np.arange(n), weights=counts) - 150) < 3


def test_subset_has_distinct_ranks_and_is_seeded() -> None:
    config = GainRLConfig(sigma=50.0, subset_size=64)
    a, b = GainRLSampler(config, 500, seed=7), GainRLSampler(config, 500, seed=7)
    first = a.select(0)
    assert len(set(first.tolist())) == 64 and first.max() < 500
    assert np.array_equal(first, b.select(0))
    assert np.array_equal(first, a.select(0)), "the same epoch asked twice gives the same subset"
    assert not np.array_equal(GainRLSampler(config, 500, seed=8).select(0), first)


@pytest.mark.parametrize(("n", "accuracy", "angle", "expected"), [
    (500, 0.5, 0.0, 0.0),
    (500, 1.0, 0.0, 500 * math.tanh(1.0)),
    (500, 0.9, 0.2, 500 * math.tanh(0.8) + 500 * math.tanh(0.4)),
    (500, 1.0, 5.0, 500 * math.tanh(1.0) + 500 * math.tanh(10.0)),
    (500, 0.0, 0.0, 0.0),  # 500 * tanh(-1) < 0 is clamped to adj_min = 0
    (1000, 1.0, 5.0, 1000.0),  # 1000 * (tanh(1) + tanh(10)) > 1000 is clamped to adj_max
])
def test_mu_adjustment_matches_the_published_formula(n: float, accuracy: float, angle: float, expected: float) -> None:
    assert mu_adjustment(GainRLConfig(n=n), accuracy, angle) == pytest.approx(expected)


def test_next_epoch_samples_around_the_updated_mu_and_mu_stays_in_the_list() -> None:
    config = GainRLConfig(n=100.0, sigma=5.0, subset_size=10, adj_max=1000.0)
    curriculum = GainRLSampler(config, 300, seed=1)
    assert curriculum.select(0).mean() < 15
    curriculum.update(accuracy=1.0, angle=0.5)
    expected_mu = 100 * math.tanh(1.0) + 100 * math.tanh(1.0)
    assert curriculum.mu == pytest.approx(expected_mu)
    assert abs(curriculum.select(1).mean() - expected_mu) < 6, "no one-epoch lag"
    for _ in range(10):
        curriculum.update(accuracy=1.0, angle=5.0)
    assert curriculum.mu == 299.0


def test_scale_free_parameters_are_fractions_of_the_dataset() -> None:
    config = GainRLConfig.scale_free(7500)
    assert (config.n, config.sigma, config.adj_max) == pytest.approx((500, 1000, 1000))
    small = GainRLConfig.scale_free(750, subset_size=32)
    assert (small.n, small.sigma, small.adj_max, small.subset_size) == pytest.approx((50, 100, 100, 32))


@pytest.mark.parametrize("make", [
    lambda: GainRLSampler(GainRLConfig(sigma=30.0, subset_size=16), 200, seed=3),
    lambda: UniformSampler(16, 200, seed=3),
])
def test_state_round_trip_continues_the_same_schedule(make) -> None:
    original = make()
    original.select(0)
    original.update(0.7, 0.1)
    saved = json.loads(json.dumps(original.state_dict()))
    resumed = make()
    resumed.load_state_dict(saved)
    for epoch in range(1, 4):
        assert np.array_equal(original.select(epoch), resumed.select(epoch))
        original.update(0.8, 0.2)
        resumed.update(0.8, 0.2)
    assert original.state_dict() == resumed.state_dict()


def test_curriculum_sampler_keeps_trl_repeat_layout() -> None:
    curriculum = UniformSampler(12, 100, seed=0)
    sampler = CurriculumSampler(curriculum, 12, mini_repeat_count=3, batch_size=4, repeat_count=2)
    ranks = curriculum.select(0)
    reference = [int(ranks[i]) for i in RepeatSampler(range(12), mini_repeat_count=3, batch_size=4, repeat_count=2, shuffle=False)]
    order = list(sampler)
    assert order == reference
    assert order[:6] == [ranks[0]] * 3 + [ranks[1]] * 3, "each prompt repeated num_generations times, in place"
    assert len(sampler) == len(order) == 12 * 3 * 2
    sampler.set_epoch(1)
    second = list(sampler)
    assert len(second) == len(order), "constant length per epoch"
    assert set(second) == set(curriculum.select(1).tolist()) and set(second) != set(order)
