"""The NONMEM-style data reader and the shipped data sets."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

from koopnb import datasets
from koopnb.data import (
    read_nonmem,
    subject_covariates,
    subject_observations,
    subject_regimen,
    subjects,
)
from koopnb.errors import DataError
from koopnb.regimen import Dose, Regimen


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).strip() + "\n")
    return path


SMALL = """
    ID,TIME,AMT,DV,EVID,CMT,WT
    1,0,100,.,1,1,70
    1,1,0,5.5,0,2,70
    1,4,0,3.2,0,2,70
    2,0,200,.,1,1,80
    2,2,0,8.1,0,2,80
"""


# --- reading and tidying ---------------------------------------------------------------------------


def test_reads_a_csv_into_the_standard_columns(tmp_path):
    table = read_nonmem(write(tmp_path, SMALL))
    assert list(table.columns) == ["ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR", "WT"]
    assert table["ID"].tolist() == [1, 1, 1, 2, 2]
    assert table["ID"].dtype == np.int64
    assert table["EVID"].tolist() == [1, 0, 0, 1, 0]
    assert table["MDV"].tolist() == [1, 0, 0, 1, 0]
    assert table["CMT"].dtype == "Int64"
    assert table["CMT"].tolist() == [1, 2, 2, 1, 2]
    np.testing.assert_array_equal(table["AMT"], [100, 0, 0, 200, 0])
    np.testing.assert_array_equal(table["DV"], [np.nan, 5.5, 3.2, np.nan, 8.1])
    np.testing.assert_array_equal(table["WT"], [70, 70, 70, 80, 80])
    np.testing.assert_array_equal(table["RATE"], 0.0)
    np.testing.assert_array_equal(table["DUR"], 0.0)


def test_reading_a_tidy_table_again_changes_nothing(tmp_path):
    table = read_nonmem(write(tmp_path, SMALL))
    pd.testing.assert_frame_equal(read_nonmem(table), table)
    table.to_csv(tmp_path / "again.csv", index=False)
    pd.testing.assert_frame_equal(read_nonmem(tmp_path / "again.csv"), table)


def test_reads_whitespace_separated_files_and_dataframes_alike(tmp_path):
    from_csv = read_nonmem(write(tmp_path, SMALL))
    spaced = SMALL.replace(",", "   ")
    pd.testing.assert_frame_equal(read_nonmem(write(tmp_path, spaced, "data.dat")), from_csv)
    pd.testing.assert_frame_equal(read_nonmem(str(write(tmp_path, spaced, "data.txt"))), from_csv)
    frame = pd.read_csv(write(tmp_path, SMALL))
    pd.testing.assert_frame_equal(read_nonmem(frame), from_csv)


def test_column_names_are_case_insensitive_and_id_is_optional(tmp_path):
    table = read_nonmem(pd.DataFrame({"time": [0.0, 1.0], "Amt": [10.0, 0.0], "dv": [np.nan, 2.0]}))
    assert table["ID"].tolist() == [1, 1]
    assert table["EVID"].tolist() == [1, 0]
    assert table["MDV"].tolist() == [1, 0]
    assert table["CMT"].isna().all()


def test_defaults_follow_nonmem_without_evid_and_mdv():
    table = read_nonmem(
        pd.DataFrame({"ID": [1] * 4, "TIME": [0, 1, 2, 3], "AMT": [5, 0, 0, 0], "DV": [".", "1.5", ".", "2"]})
    )
    assert table["EVID"].tolist() == [1, 0, 0, 0]
    assert table["MDV"].tolist() == [1, 0, 1, 0]


def test_observation_only_and_dose_only_tables_are_allowed():
    observations = read_nonmem(pd.DataFrame({"TIME": [1, 2], "DV": [3.0, 2.0]}))
    assert observations["EVID"].tolist() == [0, 0]
    np.testing.assert_array_equal(observations["AMT"], 0.0)
    doses = read_nonmem(pd.DataFrame({"TIME": [0, 12], "AMT": [100, 100]}))
    assert doses["EVID"].tolist() == [1, 1]
    assert doses["DV"].isna().all()


def test_sorts_by_id_then_time_with_doses_before_observations():
    raw = pd.DataFrame(
        {
            "ID": [2, 2, 1, 1, 1],
            "TIME": [0, 0, 0, 0, 5],
            "AMT": [0, 50, 0, 10, 0],
            "DV": [0.1, ".", 0.2, ".", 1.0],
        }
    )
    table = read_nonmem(raw)
    assert table["ID"].tolist() == [1, 1, 1, 2, 2]
    assert table["EVID"].tolist() == [1, 0, 0, 1, 0]
    np.testing.assert_array_equal(table["TIME"], [0, 0, 5, 0, 0])
    np.testing.assert_array_equal(table["DV"], [np.nan, 0.2, 1.0, np.nan, 0.1])
    assert table.index.tolist() == list(range(5))


def test_text_ids_and_text_covariates_are_kept():
    raw = pd.DataFrame({"ID": ["a", "a", "b"], "TIME": [0, 1, 0], "AMT": [1, 0, 2], "DV": [".", 3, "."]})
    raw["SEX"] = ["F", "F", "."]
    table = read_nonmem(raw)
    assert table["ID"].tolist() == ["a", "a", "b"]
    assert table["SEX"].iloc[:2].tolist() == ["F", "F"]
    assert pd.isna(table["SEX"].iloc[2])
    pd.testing.assert_frame_equal(read_nonmem(table), table)
    assert subjects(table) == ["a", "b"]
    assert subject_covariates(table, "a") == {"SEX": "F"}
    assert subject_covariates(table, "b") == {}


def test_compartments_may_be_state_names():
    raw = pd.DataFrame(
        {
            "TIME": [0, 0, 1, 2],
            "AMT": [100, 50, 0, 0],
            "DV": [".", ".", 2, 3],
            "CMT": ["depot", 3, "central", "."],
        }
    )
    table = read_nonmem(raw)
    assert table["CMT"].tolist() == ["depot", "3", "central", None]
    regimen = subject_regimen(table)
    assert sorted(dose.cmt for dose in regimen) == ["3", "depot"]


# --- doses ------------------------------------------------------------------------------------------


def test_addl_doses_are_expanded_into_rows_in_time_order():
    raw = pd.DataFrame(
        {
            "ID": [1, 1, 1],
            "TIME": [0, 12, 30],
            "AMT": [100, 0, 0],
            "DV": [".", 4.0, 5.0],
            "ADDL": [3, ".", "."],
            "II": [12, ".", "."],
            "CMT": [1, 2, 2],
            "WT": [70, 70, 70],
        }
    )
    table = read_nonmem(raw)
    assert "ADDL" not in table
    assert table["EVID"].tolist() == [1, 1, 0, 1, 0, 1]
    np.testing.assert_array_equal(table["TIME"], [0, 12, 12, 24, 30, 36])
    doses = table[table["EVID"] == 1]
    np.testing.assert_array_equal(doses["TIME"], [0, 12, 24, 36])
    np.testing.assert_array_equal(doses["AMT"], 100)
    assert doses["CMT"].tolist() == [1, 1, 1, 1]
    # II stays on the row that gave it; the added doses are plain doses without covariate values of their own
    np.testing.assert_array_equal(doses["II"], [12, 0, 0, 0])
    np.testing.assert_array_equal(doses["SS"], 0)
    np.testing.assert_array_equal(doses["WT"], [70, np.nan, np.nan, np.nan])
    assert subject_covariates(table) == {"WT": 70.0}
    assert subject_regimen(table) == Regimen.repeat(100, every=12, count=4, cmt="1")


def test_rate_gives_the_infusion_duration_and_dur_gives_the_rate():
    raw = pd.DataFrame(
        {
            "TIME": [0, 6, 12, 18],
            "AMT": [1000, 600, 300, 0],
            "RATE": [500, ".", 150, "."],
            "DUR": [".", 3, 2, "."],
            "DV": [".", ".", ".", 7.0],
        }
    )
    table = read_nonmem(raw)
    np.testing.assert_allclose(table["DUR"], [2, 3, 2, 0], rtol=1e-15)
    np.testing.assert_allclose(table["RATE"], [500, 200, 150, 0], rtol=1e-15)
    regimen = subject_regimen(table)
    assert regimen.doses == (Dose(1000, 0, duration=2), Dose(600, 6, duration=3), Dose(300, 12, duration=2))


def test_evid_2_rows_are_kept_but_are_neither_doses_nor_observations():
    raw = pd.DataFrame({"TIME": [0, 1, 2], "AMT": [10, 0, 0], "DV": [".", 1.0, 2.0], "EVID": [1, 2, 0]})
    table = read_nonmem(raw)
    assert table["EVID"].tolist() == [1, 2, 0]
    assert table["MDV"].tolist() == [1, 1, 0]
    times, values, _ = subject_observations(table)
    np.testing.assert_array_equal(times, [2])
    np.testing.assert_array_equal(values, [2.0])
    assert len(subject_regimen(table)) == 1


# --- observations, BLQ, covariates ----------------------------------------------------------------


def test_blq_rows_carry_the_lloq_in_dv():
    raw = pd.DataFrame(
        {
            "TIME": [0, 1, 2, 3, 4],
            "AMT": [100, 0, 0, 0, 0],
            "DV": [".", 3.0, 0.5, ".", 9.0],
            "BLQ": [0, 0, 1, 1, 0],
            "LLOQ": [".", 0.5, 0.5, 0.25, 0.5],
            "MDV": [1, 0, 0, 0, 1],
        }
    )
    table = read_nonmem(raw)
    assert table["BLQ"].tolist() == [0, 0, 1, 1, 0]
    times, values, blq = subject_observations(table)
    np.testing.assert_array_equal(times, [1, 2, 3])  # the MDV 1 observation at 4 h is not used
    np.testing.assert_array_equal(values, [3.0, 0.5, 0.25])
    np.testing.assert_array_equal(blq, [False, True, True])
    assert blq.dtype == bool


def test_cens_is_read_as_blq():
    table = read_nonmem(pd.DataFrame({"TIME": [1, 2], "DV": [3.0, 0.1], "cens": [0, 1]}))
    assert table["BLQ"].tolist() == [0, 1]
    assert "CENS" not in table and "cens" not in table
    assert "LLOQ" not in table


def test_observations_without_blq_column_have_an_all_false_mask(tmp_path):
    times, values, blq = subject_observations(read_nonmem(write(tmp_path, SMALL)), subject=2)
    np.testing.assert_array_equal(times, [2.0])
    np.testing.assert_array_equal(values, [8.1])
    np.testing.assert_array_equal(blq, [False])


def test_covariates_constant_within_a_subject_are_a_dict(tmp_path):
    raw = pd.DataFrame({"TIME": [0, 1, 2], "AMT": [1, 0, 0], "DV": [".", 2, 3], "CRCL": [".", 90, "."], "WT": 70})
    assert subject_covariates(raw) == {"CRCL": 90.0, "WT": 70.0}
    assert subject_covariates(read_nonmem(write(tmp_path, SMALL)), 2) == {"WT": 80.0}


def test_one_subject_must_be_named_when_there_are_several(tmp_path):
    table = read_nonmem(write(tmp_path, SMALL))
    with pytest.raises(DataError, match="the table holds 2 subjects; choose one with subject=") as caught:
        subject_regimen(table)
    assert caught.value.column == "ID"
    with pytest.raises(DataError, match="there is no subject 3"):
        subject_observations(table, 3)
    assert subject_regimen(table, 2) == Regimen([Dose(200, 0, "1")])
    assert subjects(table) == [1, 2]


# --- errors name the row and column ---------------------------------------------------------------


def raw_error(text, tmp_path):
    with pytest.raises(DataError) as caught:
        read_nonmem(write(tmp_path, text))
    return caught.value


@pytest.mark.parametrize(
    ("text", "row", "column", "message"),
    [
        ("ID,AMT,DV\n1,0,1", None, "TIME", "the table needs a TIME column"),
        ("ID,TIME\n1,0", None, "DV", "needs a DV column (observations) or an AMT column (doses)"),
        ("ID,TIME,DV\n1,0,1\n1,2,abc", 2, "DV", "'abc' is not a number"),
        ("ID,Time,DV\n1,0,1\n1,two,1", 2, "Time", "'two' is not a number"),
        ("ID,TIME,AMT,DV\n1,0,-5,.", 1, "AMT", "AMT must be a finite number >= 0"),
        ("ID,TIME,DV\n1,0,1\n1,-1,1", 2, "TIME", "TIME must be a finite number of hours >= 0"),
        ("ID,TIME,DV\n1,0,1\n1,.,1", 2, "TIME", "every row needs a TIME"),
        ("ID,TIME,DV\n1,0,1\n1,5,1\n1,3,1", 3, "TIME", "earlier than the row before for the same subject"),
        ("ID,TIME,DV\n1,0,1\n2,3,1\n1,5,1", 3, "ID", "subject '1' appears again after other subjects"),
        ("ID,TIME,DV\n1,0,1\n.,3,1", 2, "ID", "every row needs an ID"),
        ("ID,TIME,DV,MDV\n1,0,1,0\n1,1,.,0", 2, "DV", "an observation row (EVID 0, MDV 0) needs a finite DV"),
        ("ID,TIME,DV\n1,0,1\n1,1,inf", 2, "DV", "needs a finite DV, not 'inf'"),
        ("ID,TIME,AMT,RATE,DUR,DV\n1,0,100,50,3,.", 1, "RATE", "RATE '50' and DUR disagree"),
        ("ID,TIME,AMT,RATE,DV\n1,0,100,-1,.", 1, "RATE", "RATE '-1' (a rate modelled in NONMEM's $PK) is not"),
        ("ID,TIME,AMT,RATE,DV\n1,0,100,-5,.", 1, "RATE", "RATE must be a finite number >= 0"),
        ("ID,TIME,AMT,DUR,DV\n1,0,100,-1,.", 1, "DUR", "DUR must be a finite number >= 0"),
        ("ID,TIME,AMT,ADDL,DV\n1,0,100,3,.", 1, "ADDL", "ADDL doses need an interval II > 0 h"),
        ("ID,TIME,AMT,ADDL,II,DV\n1,0,100,3,0,.", 1, "II", "ADDL doses need an interval II > 0 h"),
        ("ID,TIME,AMT,ADDL,II,DV\n1,0,100,1.5,12,.", 1, "ADDL", "ADDL must be a whole number"),
        ("ID,TIME,AMT,ADDL,II,DV\n1,0,0,2,12,1", 1, "ADDL", "ADDL '2' is only for dose rows"),
        ("ID,TIME,AMT,SS,DV\n1,0,100,1,.", 1, "SS", "a steady-state dose (SS 1 or 2) needs the dosing interval II"),
        ("ID,TIME,AMT,SS,II,DV\n1,0,100,2,0,.", 1, "II", "needs the dosing interval II > 0 h, not '0'"),
        ("ID,TIME,AMT,SS,II,DV\n1,0,100,3,12,.", 1, "SS", "'3' is not a valid SS (use 0, 1, 2)"),
        ("ID,TIME,AMT,SS,II,DV\n1,0,0,1,12,5", 1, "SS", "SS '1' is only for dose rows (EVID 1 or 4)"),
        ("ID,TIME,AMT,SS,II,DUR,DV\n1,0,100,1,12,13,.", 1, "DUR", "a steady-state infusion of 13 h repeated every"),
        ("ID,TIME,AMT,RATE,DUR,DV\n1,0,100,-2,3,.", 1, "DUR", "RATE -2 means the model gives the infusion duration"),
        ("ID,TIME,AMT,EVID,DV\n1,0,100,1,.\n1,1,0,7,.", 2, "EVID", "'7' is not a valid EVID (use 0, 1, 2, 3, 4)"),
        ("ID,TIME,AMT,EVID,DV\n1,0,.,1,.", 1, "AMT", "a dose row (EVID 1 or 4) needs an AMT"),
        ("ID,TIME,AMT,EVID,DV\n1,0,.,4,.", 1, "AMT", "a dose row (EVID 1 or 4) needs an AMT"),
        ("ID,TIME,AMT,EVID,DV\n1,0,100,3,.", 1, "AMT", "a row with EVID 2 or 3 cannot have AMT '100'"),
        ("ID,TIME,AMT,EVID,DV\n1,0,100,1,.\n1,0,.,3,.", 2, "EVID", "the reset (EVID '3') follows a dose at the same"),
        ("ID,TIME,AMT,EVID,DV\n1,5,100,1,.\n1,0,100,4,.", 2, "TIME", "TIME '0' goes back at a reset"),
        ("ID,TIME,AMT,ADDL,II,DV\n1,0,100,10001,12,.", 1, "ADDL",
         "ADDL '10001' is more than the limit of 10,000 additional doses per row"),
        ("ID,TIME,DV,OCC\n1,0,1,1\n1,1,2,.", 2, "OCC", "every row needs an OCC (occasion number)"),
        ("ID,TIME,DV,OCC\n1,0,1,1\n1,1,2,1.5", 2, "OCC", "OCC must be a whole number (the occasion), not '1.5'"),
        ("ID,TIME,AMT,EVID,DV\n1,0,5,0,1", 1, "AMT", "an observation row (EVID 0) cannot have AMT '5'"),
        ("ID,TIME,AMT,MDV,DV\n1,0,5,0,.", 1, "MDV", "a row that is not an observation (EVID 1 to 4) must have MDV 1"),
        ("ID,TIME,MDV,DV\n1,0,2,1", 1, "MDV", "'2' is not a valid MDV (use 0, 1)"),
        ("ID,TIME,CMT,DV\n1,0,0,1", 1, "CMT", "CMT '0' must be a compartment number >= 1"),
        ("ID,TIME,CMT,DV\n1,0,1.5,1", 1, "CMT", "CMT '1.5' must be a compartment number"),
        ("ID,TIME,CMT,DV\n1,0,1,1\n1,1,my gut,1", 2, "CMT", "neither a compartment number nor a state name"),
        ("ID,TIME,AMT,BLQ,DV\n1,0,100,1,.", 1, "BLQ", "BLQ '1' is only for observation rows"),
        ("ID,TIME,BLQ,DV\n1,0,2,1", 1, "BLQ", "'2' is not a valid BLQ (use 0, 1)"),
        ("ID,TIME,CENS,DV\n1,0,-1,1", 1, "CENS", "'-1' is not a valid CENS (use 0, 1)"),
        ("ID,TIME,BLQ,DV,MDV\n1,0,1,.,0", 1, "DV", "a BLQ row needs the quantification limit in DV or LLOQ"),
        ("ID,TIME,DV,LLOQ\n1,0,1,-1", 1, "LLOQ", "LLOQ must be a finite number >= 0"),
        ("ID,TIME,BLQ,CENS,DV\n1,0,0,0,1", None, "CENS", "give BLQ or CENS, not both"),
        ("ID,TIME,DV,dv\n1,0,1,1", None, "dv", "two columns are named DV (ignoring case)"),
    ],
)
def test_every_problem_names_its_row_and_column(tmp_path, text, row, column, message):
    error = raw_error(text, tmp_path)
    assert (error.row, error.column) == (row, column)
    assert message in error.message
    where = [f"row {row}"] if row is not None else []
    assert str(error) == ", ".join([*where, f"column {column!r}"]) + ": " + error.message


def test_row_numbers_count_data_rows_of_a_dataframe_by_position():
    raw = pd.DataFrame({"TIME": [0, 1, 2], "DV": [1, 2, "x"]}, index=[10, 20, 30])
    with pytest.raises(DataError) as caught:
        read_nonmem(raw)
    assert (caught.value.row, caught.value.column) == (3, "DV")


def test_unreadable_sources_are_reported(tmp_path):
    with pytest.raises(DataError, match="there is no data file"):
        read_nonmem(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="a file path or a pandas DataFrame, not list"):
        read_nonmem([1, 2])
    with pytest.raises(DataError, match="the table has no rows"):
        read_nonmem(pd.DataFrame({"TIME": [], "DV": []}))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="is not a readable table"):
        read_nonmem(tmp_path / "empty.csv")


def test_rate_and_dur_that_agree_are_accepted():
    table = read_nonmem(pd.DataFrame({"TIME": [0], "AMT": [100.0], "RATE": [50.0], "DUR": [2.0]}))
    assert (table["RATE"].item(), table["DUR"].item()) == (50.0, 2.0)


# --- the shipped data sets -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def theoph():
    return datasets.theophylline()


@pytest.fixture(scope="module")
def indometh():
    return datasets.indomethacin()


def _published(name):
    from importlib import resources

    with resources.files("koopnb.datasets").joinpath(name).open() as handle:
        return pd.read_csv(handle)


def test_theophylline_has_12_subjects_132_observations_and_one_oral_dose_each(theoph):
    assert subjects(theoph) == list(range(1, 13))
    observations = theoph[theoph["EVID"] == 0]
    assert len(observations) == 132
    assert (observations["CMT"] == 2).all() and (observations["MDV"] == 0).all()
    doses = theoph[theoph["EVID"] == 1]
    assert len(doses) == 12
    assert (doses["TIME"] == 0).all() and (doses["CMT"] == 1).all() and (doses["MDV"] == 1).all()
    assert doses["AMT"].iloc[0] == pytest.approx(4.02 * 79.6, rel=1e-15)
    assert doses["AMT"].iloc[0] == pytest.approx(319.992, rel=1e-12)
    published = _published("theoph.csv").groupby("Subject").first()
    np.testing.assert_allclose(doses["AMT"], published["Dose"] * published["Wt"], rtol=1e-15)
    np.testing.assert_array_equal(doses["WT"], published["Wt"])
    np.testing.assert_array_equal(doses["DOSE_MG_KG"], published["Dose"])


def test_theophylline_keeps_the_published_concentrations_in_order(theoph):
    published = _published("theoph.csv")
    observations = theoph[theoph["EVID"] == 0]
    np.testing.assert_array_equal(observations["ID"], published["Subject"])
    np.testing.assert_array_equal(observations["TIME"], published["Time"])
    np.testing.assert_array_equal(observations["DV"], published["conc"])
    at_zero = observations[observations["TIME"] == 0]
    assert len(at_zero) == 12
    assert at_zero.loc[at_zero["DV"] > 0, "ID"].tolist() == [1, 7, 10]
    times, values, blq = subject_observations(theoph, 1)
    assert (times[0], values[0], times[-1], values[-1]) == (0.0, 0.74, 24.37, 3.28)
    assert not blq.any()


def test_theophylline_subject_regimen_and_covariates(theoph):
    assert subject_regimen(theoph, 1) == Regimen([Dose(4.02 * 79.6, 0.0, "1")])
    assert subject_covariates(theoph, 1) == {"WT": 79.6, "DOSE_MG_KG": 4.02}


def test_indomethacin_has_6_subjects_66_observations_and_a_25_mg_bolus_each(indometh):
    assert subjects(indometh) == list(range(1, 7))
    observations = indometh[indometh["EVID"] == 0]
    assert len(observations) == 66
    assert (observations["CMT"] == 1).all()
    published = _published("indometh.csv")
    np.testing.assert_array_equal(observations["TIME"], published["time"])
    np.testing.assert_array_equal(observations["DV"], published["conc"])
    doses = indometh[indometh["EVID"] == 1]
    assert doses["AMT"].tolist() == [25.0] * 6
    assert (doses["TIME"] == 0).all() and (doses["CMT"] == 1).all()
    assert subject_regimen(indometh, 4) == Regimen([Dose(25, 0, "1")])
    assert subject_covariates(indometh, 4) == {}
    assert list(indometh.columns) == ["ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR"]


@pytest.mark.parametrize("load", [datasets.theophylline, datasets.indomethacin])
def test_data_sets_are_sorted_tidy_tables(load):
    table = load()
    pd.testing.assert_frame_equal(read_nonmem(table), table)
    for _, rows in table.groupby("ID"):
        assert np.all(np.diff(rows["TIME"]) >= 0)
        assert rows["EVID"].iloc[0] == 1
    assert table["ID"].is_monotonic_increasing
