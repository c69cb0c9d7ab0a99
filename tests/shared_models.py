"""Model texts that several test modules use, written once (tests import them by module name, as pytest puts
this folder on sys.path)."""

THEOPHYLLINE = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
dose depot
"""
"""Theophylline, one compartment with first-order absorption (MODEL_LANGUAGE.md's example), no residual error."""

MICHAELIS_MENTEN = """
ka   = 1.0 [1/h]
Vmax = 60  [mg/h] ~ 0.25
Km   = 8   [mg/L] ~ 0.3
V    = 40  [L]
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - Vmax*(central/V)/(Km + central/V)
conc = central / V
dose depot
"""
"""Illustrative saturable elimination (not from a publication): AUC is not proportional to the dose."""

CORRELATED = """
B = 2.0 ~ 0.4
C = 1.5 ~ 0.3
corr(B, C) = 0.5
d/dt(x) = 1
level = 10 + log(B) + x * log(C)
level ~ additive(0.3)
"""
"""Linear in η with a block Ω (``corr``): level = 10 + log B + t·log C, so the Laplace marginal is exact."""

VANCOMYCIN_WEIGHT = """
covariate CRCL = 120 [mL/min]       # Goti et al., Ther Drug Monit 2018;40:212-221, Table 2
covariate WT = 70 [kg]
TVCL = 4.5  [L/h] ~ 39.8%
TVVc = 58.4 [L]   ~ 81.6%
Vp   = 38.4 [L]   ~ 57.1%
Q    = 6.5  [L/h]
CL   = TVCL * (CRCL/120)^0.8
Vc   = TVVc * WT/70
d/dt(central)    = -CL/Vc*central - Q/Vc*central + Q/Vp*peripheral
d/dt(peripheral) =  Q/Vc*central - Q/Vp*peripheral
conc = central / Vc
conc ~ combined(3.4, 0.227)
dose central
"""
"""The vancomycin model of benchmarks/scale.py (notebook 04's, with the paper's weight effect on the central volume)."""
