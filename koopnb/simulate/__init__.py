"""Simulation: exact for linear models (linear.py), a batched ODE solve otherwise (ode.py); split in pieces at
resets, steady-state doses and covariate changes (piecewise.py, steady.py)."""

from koopnb.simulate.trajectory import Trajectory, solve

__all__ = ["Trajectory", "solve"]
