"""The Koopman expectation: expectations over parameter uncertainty by quadrature, with error estimates.

Rules (gauss.py, adaptive.py), window pre-integration (preintegration.py), adaptive cubature (cube.py)
and the Monte Carlo / QMC baselines (sampling.py) all answer the same problem posed by engine.py.
"""

from koopnb.expectation.engine import expectation, probability
from koopnb.expectation.result import ExpectationResult

__all__ = ["ExpectationResult", "expectation", "probability"]
