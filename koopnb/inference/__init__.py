"""Bayesian estimation with emcee: one patient (fit_individual) or a population (fit_population)."""

from koopnb.inference.foce import PopulationEstimate
from koopnb.inference.individual import fit_individual
from koopnb.inference.population import fit_population
from koopnb.inference.posterior import PopulationPosterior, Posterior
from koopnb.inference.sampler import ConvergenceWarning

__all__ = ["ConvergenceWarning", "PopulationEstimate", "PopulationPosterior", "Posterior", "fit_individual",
           "fit_population"]
