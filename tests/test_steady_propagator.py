"""The steady-state propagator e^{Aτ} from a batched eigendecomposition equals scipy's expm, and near-equal
eigenvalues (ill-conditioned eigenvectors) are left to expm."""

import numpy as np
from scipy.linalg import expm

from koopnb.simulate.steady import WELL_CONDITIONED, _propagator


def test_propagator_equals_expm_for_pk_matrices_and_near_confluent_ones():
    rng = np.random.default_rng(3)
    ka, k, k12, k21 = (np.exp(rng.normal(0, 0.7, 200)) for _ in range(4))
    oral = np.zeros((200, 2, 2))
    oral[:, 0, 0], oral[:, 1, 0], oral[:, 1, 1] = -ka, ka, -k
    oral[0, 0, 0], oral[0, 1, 1] = -0.3, -0.3 * (1 + 1e-9)  # eigenvalues equal to 9 digits
    two = np.zeros((200, 2, 2))
    two[:, 0, 0], two[:, 0, 1], two[:, 1, 0], two[:, 1, 1] = -k - k12, k21, k12, -k21
    for matrix in (oral, two):
        values, vectors = np.linalg.eig(matrix)
        phi = _propagator(matrix, values, vectors, 12.0)
        reference = expm(matrix * 12.0)
        np.testing.assert_allclose(phi, reference, rtol=1e-10, atol=1e-14)
    assert np.linalg.cond(np.linalg.eig(oral)[1][0]) > WELL_CONDITIONED  # the near-confluent set took expm
