"""Simulation: exact for linear models (linear.py), a batched ODE solve otherwise (ode.py)."""

from koopnb.simulate.trajectory import Trajectory, solve

__all__ = ["Trajectory", "solve"]
