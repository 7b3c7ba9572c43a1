"""The curriculum samplers and the TRL sampler layout."""

import json
import math

import numpy as np
import pytest
from trl.trainer.utils import RepeatSampler

from gainrl_ops.training.config import TrainingRunConfig
from gainrl_ops.training.feedback import group_rewards
from gainrl_ops.training.learnability import LearnabilitySampler
from gainrl_ops.training.pools import PoolSampler, pool_weights
from gainrl_ops.training.sampling import (
    GainRLConfig,
    GainRLSampler,
    UniformSampler,
    gaussian_weights,
    mu_adjustment,
)
from gainrl_ops.training.trainer import CurriculumSampler

# chi-square quantile 0.999 at 5 degrees of freedom: a fixed-seed test that fails 1 time in 1000 by chance.
CHI2_5_DOF_999 = 20.515


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


def _rewards_of(ranks: np.ndarray) -> np.ndarray:
    """A made-up mean group reward for each drawn rank, the same on every call."""
    return (np.asarray(ranks) % 5) / 4.0


@pytest.mark.parametrize("make", [
    lambda: GainRLSampler(GainRLConfig(sigma=30.0, subset_size=16), 200, seed=3),
    lambda: UniformSampler(16, 200, seed=3),
    lambda: LearnabilitySampler(np.linspace(0.0, 1.0, 200), 16, seed=3),
    lambda: PoolSampler(16, 200, seed=3),
])
def test_state_round_trip_and_replayed_rewards_continue_the_same_schedule(make) -> None:
    """A resumed run loads the state and replays the rollout records of the epochs done."""
    original = make()
    records = []
    for epoch in range(2):
        ranks = original.select(epoch)
        records.append((ranks.copy(), _rewards_of(ranks)))
        original.observe(*records[-1])
        original.update(0.7, 0.1)
    saved = json.loads(json.dumps(original.state_dict()))
    resumed = make()
    resumed.load_state_dict(saved)
    for ranks, rewards in records:
        resumed.observe(ranks, rewards)
    for epoch in range(2, 6):
        ranks = original.select(epoch)
        assert np.array_equal(ranks, resumed.select(epoch))
        for sampler in (original, resumed):
            sampler.observe(ranks, _rewards_of(ranks))
            sampler.update(0.8, 0.2)
    assert original.state_dict() == resumed.state_dict()


def test_learnability_draws_follow_p_times_one_minus_p() -> None:
    # p = 0 and p = 1 teach nothing; None has no estimate and gets the prior 0.5.
    pass_rates = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0, np.nan])
    sampler = LearnabilitySampler(pass_rates, subset_size=1, seed=0)
    draws = 20_000
    counts = np.bincount([sampler.select(epoch)[0] for epoch in range(draws)], minlength=8)
    learnable = np.array([0.0, 0.09, 0.1875, 0.25, 0.1875, 0.09, 0.0, 0.25])
    assert counts[0] == counts[6] == 0, "a prompt always or never solved is never drawn"
    keep = learnable > 0
    expected = learnable[keep] / learnable.sum() * draws
    chi2 = (((counts[keep] - expected) ** 2) / expected).sum()
    assert chi2 < CHI2_5_DOF_999, chi2
    uniform = np.full(keep.sum(), draws / keep.sum())
    assert (((counts[keep] - uniform) ** 2) / uniform).sum() > 10 * CHI2_5_DOF_999, "the test tells p(1-p) from uniform"


def test_learnability_epochs_are_distinct_seeded_and_move_with_the_observed_rewards() -> None:
    pass_rates = np.array([0.5] * 10 + [0.0] * 10)
    a, b = LearnabilitySampler(pass_rates, 6, seed=4), LearnabilitySampler(pass_rates, 6, seed=4)
    first = a.select(0)
    assert np.array_equal(first, b.select(0)) and np.array_equal(first, a.select(0))
    assert len(set(first.tolist())) == 6 and first.max() < 10, "distinct prompts, none with p(1-p) = 0"
    a.observe(np.arange(10), np.ones(10))  # all solved: nothing learnable among them now
    a.observe(np.array([10, 11]), np.array([0.5, 0.25]))
    second = a.select(1)
    assert set(second[:2].tolist()) == {10, 11}, "the two learnable prompts, then uniform fill from the rest"
    assert len(set(second.tolist())) == 6
    assert a.weights()[10] == pytest.approx(0.25 / (0.25 + 0.1875))


def test_a_learnability_run_without_pass_rates_names_what_to_run() -> None:
    run = TrainingRunConfig(name="lilo", sampler="learnability", subset_size=8)
    with pytest.raises(ValueError, match="^training run 'lilo': the learnability sampler needs the base checkpoint's pass rates; .*estimate_difficulty"):
        run.make_sampler(48)
    assert isinstance(run.make_sampler(48, np.full(48, np.nan)), LearnabilitySampler)
    assert not run.uses_feedback and run.ordering == "angle"


@pytest.mark.parametrize(("reward", "weight"), [
    (None, 1.0),  # unseen
    (0.0, 0.2), (0.25, 0.2),  # hard, threshold inclusive
    (0.2500001, 1.0), (0.5, 1.0), (0.75, 1.0),  # normal
    (0.76, 0.2), (1.0, 0.2),  # easy
    (1.5, 0.2),  # above every threshold: the last pool takes it
])
def test_pool_weights_follow_prime_rl_defaults(reward: float | None, weight: float) -> None:
    assert pool_weights(np.array([np.nan if reward is None else reward]))[0] == weight


def test_pool_draws_with_replacement_in_proportion_to_the_pool_weights() -> None:
    sampler = PoolSampler(subset_size=50, n_prompts=4, seed=0)
    first = sampler.select(0)
    assert len(first) == 50 and len(set(first.tolist())) == 4, "with replacement: more draws than prompts"
    sampler.observe(np.array([0, 1, 2]), np.array([0.0, 0.5, 1.0]))  # hard, normal, easy; prompt 3 unseen
    assert sampler.weights() == pytest.approx(np.array([0.2, 1.0, 0.2, 1.0]) / 2.4)
    counts = np.bincount(np.concatenate([sampler.select(epoch) for epoch in range(1, 401)]), minlength=4)
    expected = np.array([0.2, 1.0, 0.2, 1.0]) / 2.4 * counts.sum()
    assert (((counts - expected) ** 2) / expected).sum() < 16.27  # chi-square 0.999 at 3 dof
    sampler.observe(np.array([1]), np.array([1.0]))
    assert sampler.weights()[1] == pytest.approx(0.2 / 1.6), "the latest mean reward counts, not a running average"


def test_group_rewards_of_literal_rollouts() -> None:
    groups = group_rewards(["b", "a", "b", "a", "b", "a", "c", "c"], [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    assert groups["id"].to_list() == ["a", "b", "c"]
    assert groups["n"].to_list() == [3, 3, 2]
    assert groups["mean_reward"].to_list() == pytest.approx([1 / 3, 1.0, 0.0])
    assert groups["reward_std"].to_list() == pytest.approx([math.sqrt(1 / 3), 0.0, 0.0]), "sample std, ddof 1"
    assert groups["all_equal"].to_list() == [False, True, True]
    shuffled = group_rewards(["c", "a", "b", "b", "a", "b", "a", "c"], [0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert shuffled.equals(groups), "the same rewards in another order (e.g. gathered from 2 processes) give the same rows"


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
