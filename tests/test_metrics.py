"""The benchmark's metrics behave as REFERENCE section 3 defines them."""

import numpy as np
import pytest
import torch
from piu_engine.core.metrics import forgetting_score, mia, nomus, threshold_mia


def test_mia_is_chance_on_identical_loss_distributions():
    rng = np.random.default_rng(0)
    value, std = mia(rng.exponential(1.0, 2000), rng.exponential(1.0, 2000))
    assert abs(value - 0.5) < 0.05
    assert std >= 0


def test_mia_is_perfect_on_separated_losses():
    rng = np.random.default_rng(1)
    value, _ = mia(rng.uniform(0.0, 0.1, 300), rng.uniform(2.0, 3.0, 300))
    assert value > 0.98


def test_mia_cuts_the_larger_side_to_the_smaller():
    rng = np.random.default_rng(2)
    # 50 members vs 5000 non-members of the same distribution: still chance.
    value, _ = mia(rng.normal(1, 0.3, 50), rng.normal(1, 0.3, 5000))
    assert abs(value - 0.5) < 0.15


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0, -0.5])
def test_threshold_mia_estimates_the_attack_read_during_training(shift):
    """The in-training estimate agrees with the protocol's attacker near
    chance, where the stopping rule reads it, and never reads lower (a stop it
    allows is no earlier); far from chance it may read a little higher."""
    rng = np.random.default_rng(3)
    members, nonmembers = rng.gamma(2, 0.6, 320), rng.gamma(2, 0.6, 320) + shift
    estimate = float(threshold_mia(torch.tensor(members), torch.tensor(nonmembers)))
    reference, _ = mia(members, nonmembers, n_splits=10)
    assert reference - 0.03 < estimate < reference + (0.03 if abs(shift) < 0.5 else 0.08), (estimate, reference)
    if shift == 0.0:
        assert abs(estimate - 0.5) < 0.03


def test_mia_too_few_samples_is_nan():
    """Each split tests 10% of 2n samples and needs a member and a non-member
    among them: one person with five photos has no MIA, with six they do."""
    rng = np.random.default_rng(0)
    for n in (2, 5):
        value, _ = mia(rng.random(n), rng.random(40))
        assert value != value, n
    value, _ = mia(rng.random(6), rng.random(40))
    assert 0.0 <= value <= 1.0


def test_forgetting_score_and_nomus_arithmetic():
    assert forgetting_score(0.62) == pytest.approx(0.12)
    assert forgetting_score(0.38) == pytest.approx(0.12)
    # REFERENCE section 6, MUFAC retrain: 0.496 / 0.036 / 0.712
    assert nomus(0.496, 0.036) == pytest.approx(0.712, abs=1e-3)
    assert nomus(1.0, 0.0) == 1.0
    assert nomus(0.0, 0.5) == 0.0
    assert nomus(0.8, 0.1, lam=1.0) == pytest.approx(0.8)
