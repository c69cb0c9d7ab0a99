"""koopnb's emcee pieces are emcee's: the same random draws, the same chain, the right target."""

import emcee
import numpy as np
import pytest
from scipy import stats

from koopnb.inference.ensemble import EnsembleSampler, VectorisedStretchMove

COVARIANCE = np.array([[1.0, 0.6, 0.0], [0.6, 2.0, -0.3], [0.0, -0.3, 0.5]])
PRECISION = np.linalg.inv(COVARIANCE)


def gaussian(points):
    return -0.5 * np.einsum("ij,jk,ik->i", points, PRECISION, points)


def run(move, steps, seed=7, walkers=16, density=gaussian, sampler_class=emcee.EnsembleSampler):
    initial = 0.3 * np.random.default_rng(1).standard_normal((walkers, 3))
    sampler = sampler_class(walkers, 3, density, vectorize=True, moves=move)
    sampler.random_state = np.random.RandomState(seed).get_state()
    sampler.run_mcmc(initial, steps)
    return sampler


def test_same_chain_as_emcee_stretch_move_bit_for_bit():
    ours, theirs = run(VectorisedStretchMove(), 300), run(emcee.moves.StretchMove(), 300)
    assert np.array_equal(ours.get_chain(), theirs.get_chain())
    assert np.array_equal(ours.get_log_prob(), theirs.get_log_prob())
    assert np.array_equal(ours.acceptance_fraction, theirs.acceptance_fraction)


def test_sampler_without_random_state_snapshots_gives_the_same_chain():
    ours = run(VectorisedStretchMove(), 300, sampler_class=EnsembleSampler)
    theirs = run(emcee.moves.StretchMove(), 300)
    assert np.array_equal(ours.get_chain(), theirs.get_chain())
    assert ours.random_state is None
    # Seeding still takes: another seed, another chain.
    assert not np.array_equal(run(VectorisedStretchMove(), 300, seed=8, sampler_class=EnsembleSampler).get_chain(),
                              ours.get_chain())


def test_same_chain_with_a_different_scale_and_minus_infinity_regions():
    def truncated(points):  # a hard wall: proposals beyond it are always rejected
        return np.where(points[:, 0] < 1.5, gaussian(points), -np.inf)

    initial_kwargs = {"density": truncated, "seed": 3}
    ours = run(VectorisedStretchMove(a=1.7), 200, **initial_kwargs)
    theirs = run(emcee.moves.StretchMove(a=1.7), 200, **initial_kwargs)
    assert np.array_equal(ours.get_chain(), theirs.get_chain())
    assert ours.get_chain()[:, :, 0].max() < 1.5


def test_samples_the_target_distribution():
    sampler = run(VectorisedStretchMove(), 6000, walkers=32, sampler_class=EnsembleSampler)
    draws = sampler.get_chain(discard=500, flat=True)
    tau = emcee.autocorr.integrated_time(sampler.get_chain(discard=500), tol=0).max()
    effective = draws.shape[0] / tau
    # Means within 4.5 Monte Carlo standard errors; variances within 15 %.
    assert np.all(np.abs(draws.mean(axis=0)) < 4.5 * np.sqrt(np.diag(COVARIANCE) / effective))
    assert np.allclose(np.cov(draws.T), COVARIANCE, rtol=0.15, atol=0.08)
    # The Mahalanobis radius is chi-square with 3 degrees of freedom.
    radius = np.einsum("ij,jk,ik->i", draws, PRECISION, draws)
    assert stats.kstest(radius[:: int(np.ceil(tau))], stats.chi2(3).cdf).pvalue > 1e-3


def test_nan_log_density_is_refused():
    with pytest.raises(ValueError, match="NaN"):
        run(VectorisedStretchMove(), 5, density=lambda points: np.full(len(points), np.nan) if len(points) < 16
            else gaussian(points))


def test_too_few_walkers_is_refused():
    with pytest.raises(RuntimeError, match="twice as many walkers"):
        run(VectorisedStretchMove(), 5, walkers=4)


def test_same_chain_as_emcee_differential_evolution_moves_bit_for_bit():
    """The population fits' moves: DEMove and DESnookerMove in a mixture, as emcee's own and vectorised."""
    from koopnb.inference.ensemble import VectorisedDEMove, VectorisedDESnookerMove

    def truncated(points):  # -inf regions too: those proposals are always rejected
        return np.where(points[:, 0] < 1.5, gaussian(points), -np.inf)

    ours = run([(VectorisedDEMove(), 0.8), (VectorisedDESnookerMove(), 0.2)], 300, density=truncated,
               sampler_class=EnsembleSampler)
    theirs = run([(emcee.moves.DEMove(), 0.8), (emcee.moves.DESnookerMove(), 0.2)], 300, density=truncated)
    assert np.array_equal(ours.get_chain(), theirs.get_chain())
    assert np.array_equal(ours.get_log_prob(), theirs.get_log_prob())
    assert np.array_equal(ours.acceptance_fraction, theirs.acceptance_fraction)
    assert 0.1 < np.mean(ours.acceptance_fraction) < 0.9
