"""Real NONMEM files and real patients: comments and headers, steady state, resets, occasions, modelled
durations, time-varying covariates, tidy-table trust, splitting by subject, and the quinidine data set.

Includes the regression tests for issue 14 defect 4 (data read silently wrong) and the ADDL part of defect 8.
"""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

import koopnb as kn
from koopnb import data as data_module
from koopnb import datasets
from koopnb.data import (
    ADDL_LIMIT,
    DataWarning,
    read_nonmem,
    split_subjects,
    subject_covariates,
    subject_data,
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


def error_of(source, **options) -> DataError:
    with pytest.raises(DataError) as caught:
        read_nonmem(source, **options)
    return caught.value


# --- issue 14, defect 4: data read silently wrong ----------------------------------------------------


@pytest.mark.parametrize("name", ["data.dat", "data.csv"])
def test_a_commented_header_names_the_columns_and_keeps_subjects_apart(tmp_path, name):
    text = """
        #ID TIME AMT DV
        1 0 100 .
        1 2 0 5.1
        2 0 200 .
        2 2 0 9.7
    """
    if name.endswith(".csv"):
        text = text.replace(" ", ",").replace(",,", "").replace("\n,", "\n")
        text = "\n".join(line.strip(",") for line in textwrap.dedent(text).splitlines())
    table = read_nonmem(write(tmp_path, text, name))
    assert subjects(table) == [1, 2]
    assert table["ID"].tolist() == [1, 1, 2, 2]
    assert "#ID" not in table
    np.testing.assert_array_equal(subject_observations(table, 2)[1], [9.7])


def test_comment_lines_are_skipped_wherever_they_are(tmp_path):
    path = write(tmp_path, """
        # study 101, data locked 2024-05-01
        ID,TIME,AMT,DV
        @ first patient
        1,0,100,.
          # a sample was lost here
        1,2,0,5.1

        2,0,200,.
        2,2,0,9.7
    """)
    table = read_nonmem(path)
    assert table["ID"].tolist() == [1, 1, 2, 2]
    np.testing.assert_array_equal(table["DV"], [np.nan, 5.1, np.nan, 9.7])
    # a row number counts data rows only, not the header or the comment lines
    bad = write(tmp_path, "# note\nID,TIME,DV\n# note\n1,0,1\n# note\n1,1,x\n", "bad.csv")
    error = error_of(bad)
    assert (error.row, error.column) == (2, "DV")
    assert str(error) == "row 2, column 'DV': 'x' is not a number"


def test_a_file_without_a_header_needs_columns(tmp_path):
    path = write(tmp_path, "1 0 100 . 70\n1 2 0 5.1 70\n", "data.dat")
    error = error_of(path)
    assert error.column == "TIME"
    assert error.message == ("the table needs a TIME column (hours), and no header line names one; a file without "
                             "a header needs columns=[...] (NONMEM's $INPUT names)")
    table = read_nonmem(path, columns=["id", "time", "amt", "dv", "WT"])
    assert list(table.columns) == ["ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR", "WT"]
    assert table["EVID"].tolist() == [1, 0]
    np.testing.assert_array_equal(table["WT"], 70)


def test_columns_follow_nonmem_input_with_drop_and_synonyms(tmp_path):
    path = write(tmp_path, "1,0,100,.,3\n1,2,0,5.1,3\n")
    table = read_nonmem(path, columns=["ID", "TIME", "AMT", "CP=DV", "DAT1=DROP"])
    assert list(table.columns) == ["ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR"]
    np.testing.assert_array_equal(table["DV"], [np.nan, 5.1])
    assert list(read_nonmem(path, columns=["ID", "TIME", "AMT", "DV", "SKIP"]).columns) == list(table.columns)
    frame = pd.DataFrame([[1, 0, 100, np.nan], [1, 2, 0, 5.1]])
    pd.testing.assert_frame_equal(read_nonmem(frame, columns=["ID", "TIME", "AMT", "DV"]), table)


@pytest.mark.parametrize(
    ("text", "columns", "row", "column", "message"),
    [
        ("1,0,1\n1,1,2,3\n", ["ID", "TIME", "DV"], 2, None, "the row has 4 fields but the header names 3 columns"),
        ("ID,TIME,DV\n1,0,1\n1,1\n", None, 2, None, "the row has 2 fields but the header names 3 columns"),
        ("ID,TIME,DV\n1,0,1\n", ["ID", "TIME", "DV"], None, None,
         "line 1 of '{path}' is a header naming the columns and columns= names them too"),
        ("1,0,1\n", ["ID", "TIME", "CP=CONC"], None, None, "columns= entry 'CP=CONC' is not a column name"),
    ],
)
def test_field_count_and_columns_mistakes_are_one_sentence(tmp_path, text, columns, row, column, message):
    path = write(tmp_path, text)
    error = error_of(path, columns=columns)
    assert (error.row, error.column) == (row, column)
    assert message.format(path=path) in error.message
    assert error.message.count(".") <= 1 + message.count(".")


def test_durations_in_time_are_hours_and_clock_times_count_from_each_subjects_first_row():
    hours = read_nonmem(pd.DataFrame({
        "TIME": pd.to_timedelta([0, 1, 90], unit="min"), "AMT": [100, 0, 0], "DV": [np.nan, 2.0, 1.0]}))
    np.testing.assert_array_equal(hours["TIME"], [0.0, 1 / 60, 1.5])
    clock = pd.to_datetime(["2024-03-01 08:00", "2024-03-01 09:00", "2024-03-02 08:30", "2024-05-07 22:00",
                            "2024-05-08 00:15"])
    table = read_nonmem(pd.DataFrame({"ID": [1, 1, 1, 2, 2], "TIME": clock, "AMT": [100, 0, 0, 50, 0],
                                      "DV": [np.nan, 3.0, 1.0, np.nan, 2.0]}))
    np.testing.assert_array_equal(table["TIME"], [0.0, 1.0, 24.5, 0.0, 2.25])
    assert table["TIME"].max() < 100  # 1 h never becomes 3.6e9
    infusion = read_nonmem(pd.DataFrame({"TIME": [0.0], "AMT": [500.0], "DUR": pd.to_timedelta([30], unit="min"),
                                         "SS": [1], "II": pd.to_timedelta([12], unit="h")}))
    assert subject_regimen(infusion).doses == (Dose(500, 0, None, 0.5, steady_state=1, interval=12),)


def test_dates_and_durations_where_a_number_is_meant_are_refused():
    error = error_of(pd.DataFrame({"TIME": [0, 1], "DV": pd.to_timedelta([1, 2], unit="h")}))
    assert (error.row, error.column) == (1, "DV")
    assert error.message == "DV holds durations, not numbers (first: 0 days 01:00:00)"
    error = error_of(pd.DataFrame({"TIME": [0, 1], "AMT": pd.to_datetime(["2024-01-01", "2024-01-02"])}))
    assert error.message == "AMT holds dates and times, not numbers (first: 2024-01-01 00:00:00)"


def test_a_true_false_dv_is_refused_not_read_as_one():
    error = error_of(pd.DataFrame({"TIME": [0.0, 1.0], "DV": [True, False]}))
    assert (error.row, error.column) == (1, "DV")
    assert str(error) == "row 1, column 'DV': DV holds True/False values, not numbers (first: True)"
    mixed = error_of(pd.DataFrame({"TIME": [0.0, 1.0], "DV": [2.5, True]}, dtype=object))
    assert (mixed.row, mixed.column) == (1, "DV")
    # as flags and covariates True/False mean 1/0
    table = read_nonmem(pd.DataFrame({"TIME": [1.0, 2.0], "DV": [2.0, 0.1], "BLQ": [False, True],
                                      "SMOKER": [True, True]}))
    assert table["BLQ"].tolist() == [0, 1]
    assert subject_covariates(table) == {"SMOKER": 1.0}


def test_r_na_is_missing(tmp_path):
    path = write(tmp_path, """
        ID,TIME,AMT,DV,WT
        1,0,100,NA,70
        1,2,NA,5.1,NA
    """)
    table = read_nonmem(path)
    assert table["EVID"].tolist() == [1, 0]
    np.testing.assert_array_equal(table["DV"], [np.nan, 5.1])
    np.testing.assert_array_equal(table["WT"], [70, np.nan])
    frame = read_nonmem(pd.DataFrame({"TIME": [0, 2], "AMT": [100, "NA"], "DV": ["NA", 5.1]}))
    np.testing.assert_array_equal(frame["DV"], [np.nan, 5.1])


def test_a_directory_or_a_missing_file_is_one_sentence(tmp_path):
    error = error_of(tmp_path)
    assert str(error) == f"{str(tmp_path)!r} is a directory, not a data file"
    assert str(error_of(tmp_path / "nope.csv")) == f"there is no data file {str(tmp_path / 'nope.csv')!r}"
    (tmp_path / "latin.csv").write_bytes("ID,TIME,DV\n1,0,\xb5\n".encode("latin-1"))
    assert str(error_of(tmp_path / "latin.csv")) == f"{str(tmp_path / 'latin.csv')!r} is not UTF-8 text"


def test_a_byte_order_mark_does_not_rename_the_first_column(tmp_path):
    (tmp_path / "excel.csv").write_bytes("\ufeffID,TIME,AMT,DV\n1,0,1,.\n2,0,1,.\n".encode())
    assert subjects(read_nonmem(tmp_path / "excel.csv")) == [1, 2]


def test_a_zero_dose_is_kept_with_a_warning_naming_its_row():
    raw = pd.DataFrame({"TIME": [0, 12, 14], "AMT": [100, 0, 0], "EVID": [1, 1, 0], "DV": [np.nan, np.nan, 3.0]})
    with pytest.warns(DataWarning) as caught:
        table = read_nonmem(raw)
    assert len(caught) == 1
    assert str(caught[0].message) == ("row 2, column 'AMT': a dose row (EVID 1 or 4) with AMT 0 gives no drug; "
                                      "it is kept as a dose of 0")
    assert subject_regimen(table).doses == (Dose(100, 0), Dose(0, 12))


def test_repeated_rows_are_kept_with_a_warning_naming_both():
    raw = pd.DataFrame({"ID": [1, 1, 1, 1, 1], "TIME": [0, 2, 4, 4, 6], "AMT": [100, 0, 0, 0, 0],
                        "DV": [np.nan, 5.0, 3.0, 3.0, 2.0]})
    with pytest.warns(DataWarning) as caught:
        table = read_nonmem(raw)
    assert str(caught[0].message) == ("row 4 repeats row 3 exactly (every column); both are kept, so delete one "
                                      "if it was entered twice")
    assert len(table) == 5
    twice = pd.concat([raw, raw.iloc[[0, 1]]], ignore_index=True).sort_values("TIME", kind="stable")
    with pytest.warns(DataWarning, match=r"repeats row \d exactly .* \(2 more rows repeat earlier ones\)"):
        read_nonmem(twice)


def test_a_tidy_table_read_again_warns_about_nothing():
    raw = pd.DataFrame({"TIME": [0, 4, 4], "AMT": [100, 0, 0], "DV": [np.nan, 3.0, 3.0]})
    with pytest.warns(DataWarning):
        table = read_nonmem(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_nonmem(table)
        subject_regimen(table)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"TIME": [0, 1], "AMT": np.array([5, -5], dtype=np.int64)}),
         "row 2, column 'AMT': AMT must be a finite number >= 0, not -5"),
        (pd.DataFrame({"TIME": [0, 1], "DV": [1.0, 2.0], "EVID": np.array([0, 7], dtype=np.int64)}),
         "row 2, column 'EVID': 7 is not a valid EVID (use 0, 1, 2, 3, 4)"),
        (pd.DataFrame({"ID": np.array([4, 5, 4]), "TIME": [0, 0, 1], "DV": [1.0, 1.0, 1.0]}),
         "row 3, column 'ID': subject 4 appears again after other subjects; keep each subject's rows together"),
        (pd.DataFrame({"TIME": np.array([0.0, 2.5, 1.0]), "DV": [1.0, 1.0, 1.0]}),
         "row 3, column 'TIME': TIME 1.0 is earlier than the row before for the same subject; sort each "
         "subject's rows by time"),
    ],
)
def test_messages_print_plain_numbers(frame, message):
    error = error_of(frame)
    assert str(error) == message
    assert "np." not in str(error)


def test_a_missing_subject_is_named_plainly():
    table = read_nonmem(pd.DataFrame({"ID": np.array([1, 2]), "TIME": [0, 0], "DV": [1.0, 2.0]}))
    with pytest.raises(DataError) as caught:
        subject_regimen(table, np.int64(3))
    assert str(caught.value) == "column 'ID': there is no subject 3 (the IDs are 1, 2)"
    assert all(type(subject) is int for subject in subjects(table))


# --- issue 14, defect 8: ADDL caps ----------------------------------------------------------------------


def test_addl_beyond_the_limit_is_refused_before_anything_is_built():
    error = error_of(pd.DataFrame({"TIME": [0], "AMT": [100], "ADDL": [10**7], "II": [12]}))
    assert str(error) == ("row 1, column 'ADDL': ADDL 10000000 is more than the limit of 10,000 additional doses "
                          "per row")
    table = read_nonmem(pd.DataFrame({"TIME": [0], "AMT": [100], "ADDL": [ADDL_LIMIT], "II": [1]}))
    assert len(table) == ADDL_LIMIT + 1
    many = pd.DataFrame({"ID": np.arange(1001), "TIME": 0.0, "AMT": 1.0, "ADDL": ADDL_LIMIT, "II": 1.0})
    error = error_of(many)
    assert str(error) == ("column 'ADDL': the ADDL doses would make the table 10,011,001 rows long, more than the "
                          "limit of 10,000,000")


# --- steady state, resets, occasions, modelled durations -----------------------------------------------


REAL = """
    ID,TIME,AMT,DV,EVID,CMT,SS,II,ADDL,RATE,OCC,WT
    1,0,1000,.,1,1,1,12,2,.,1,70
    1,11.5,.,12.5,0,1,.,.,.,.,1,70
    1,48,.,.,3,.,.,.,.,.,2,71
    1,48,500,.,1,1,2,24,.,-2,2,71
    1,50,.,20.1,0,1,.,.,.,.,2,71
    1,72,250,.,4,1,.,.,.,100,3,72
    1,73,.,4.2,0,1,.,.,.,.,3,72
    2,0,800,.,1,1,0,.,.,.,1,60
    2,6,.,7.7,0,1,.,.,.,.,1,60
"""


def test_steady_state_resets_occasions_and_modelled_durations_round_trip(tmp_path):
    table = read_nonmem(write(tmp_path, REAL))
    assert list(table.columns) == ["ID", "TIME", "AMT", "DV", "EVID", "CMT", "MDV", "RATE", "DUR", "SS", "II",
                                   "OCC", "WT"]
    one = table[table["ID"] == 1]
    np.testing.assert_array_equal(one["TIME"], [0, 11.5, 12, 24, 48, 48, 50, 72, 73])
    assert one["EVID"].tolist() == [1, 0, 1, 1, 3, 1, 0, 4, 0]
    assert one["SS"].tolist() == [1, 0, 0, 0, 0, 2, 0, 0, 0]
    np.testing.assert_array_equal(one["II"], [12, 0, 0, 0, 0, 24, 0, 0, 0])
    assert one["OCC"].tolist() == [1, 1, 1, 1, 2, 2, 2, 3, 3]
    assert table["OCC"].dtype == np.int64
    modelled = one[one["RATE"] == -2]
    assert len(modelled) == 1 and np.isnan(modelled["DUR"].item())
    np.testing.assert_array_equal(one["DUR"].iloc[-2], 2.5)

    regimen = subject_regimen(table, 1)
    assert regimen == Regimen(
        [Dose(1000, 0, "1", steady_state=1, interval=12), Dose(1000, 12, "1"), Dose(1000, 24, "1"),
         Dose(500, 48, "1", None, steady_state=2, interval=24), Dose(250, 72, "1", 2.5)],
        resets=(48, 72),
    )
    assert subject_regimen(table, 2) == Regimen([Dose(800, 0, "1")])
    piece = split_subjects(table)[1]
    np.testing.assert_array_equal(piece.occasions, [1, 2, 3])
    np.testing.assert_array_equal(piece.times, [11.5, 50, 73])

    # the tidy table reads back unchanged, from the DataFrame and from a CSV written by pandas
    pd.testing.assert_frame_equal(read_nonmem(table), table)
    table.to_csv(tmp_path / "tidy.csv", index=False)
    pd.testing.assert_frame_equal(read_nonmem(tmp_path / "tidy.csv"), table)


def test_rate_minus_one_stays_a_rejection(tmp_path):
    error = error_of(write(tmp_path, "ID,TIME,AMT,RATE,DV\n1,0,100,-1,."))
    assert str(error) == ("row 1, column 'RATE': RATE '-1' (a rate modelled in NONMEM's $PK) is not supported; give "
                          "RATE or DUR in the data, or RATE -2 with the duration in the model (dose STATE "
                          "duration=EXPR)")


def test_a_steady_state_infusion_keeps_its_duration_and_interval():
    table = read_nonmem(pd.DataFrame({"TIME": [0.0, 11.0], "AMT": [1000.0, 0.0], "DUR": [1.0, np.nan],
                                      "SS": [1, 0], "II": [12, np.nan], "DV": [np.nan, 14.0]}))
    assert subject_regimen(table).doses == (Dose(1000, 0, None, 1.0, steady_state=1, interval=12),)
    np.testing.assert_array_equal(table["RATE"], [1000.0, 0.0])


# --- time-varying covariates ---------------------------------------------------------------------------


CRCL = pd.DataFrame({
    "ID": 1,
    "TIME": [0, 12, 24, 36, 48, 60],
    "AMT": [100, 0, 100, 0, 100, 0],
    "DV": [np.nan, 4.0, np.nan, 5.0, np.nan, 6.0],
    "CRCL": [90, 90, 60, 60, 30, np.nan],
    "WT": 70.0,
})


def test_a_covariate_that_changes_is_a_history_under_nocb():
    history = subject_covariates(CRCL)  # NONMEM's rule by default: row k holds on (t_{k-1}, t_k]
    expected = pd.DataFrame({"TIME": [12.0, 36.0, 60.0], "CRCL": [90.0, 60.0, 30.0], "WT": 70.0})
    pd.testing.assert_frame_equal(history, expected)


def test_a_covariate_that_changes_is_a_history_under_locf():
    history = subject_covariates(CRCL, covariate_interpolation="locf")  # row k holds on [t_k, t_{k+1})
    expected = pd.DataFrame({"TIME": [0.0, 24.0, 48.0], "CRCL": [90.0, 60.0, 30.0], "WT": 70.0})
    pd.testing.assert_frame_equal(history, expected)


def _value_at(history: pd.DataFrame, name: str, t: float, rule: str) -> float:
    """The covariate at time t by the contract's definition, computed row by row (independent of _history)."""
    times, values = history["TIME"].to_numpy(), history[name].to_numpy()
    if rule == "nocb":
        later = np.flatnonzero(times >= t)
        return values[later[0]] if later.size else values[-1]
    earlier = np.flatnonzero(times <= t)
    return values[earlier[-1]] if earlier.size else values[0]


@pytest.mark.filterwarnings("ignore::koopnb.data.DataWarning")  # random rows repeat
@pytest.mark.parametrize("rule", ["nocb", "locf"])
def test_the_compressed_history_means_the_same_as_every_row(rule):
    rng = np.random.default_rng(7)
    times = np.sort(rng.choice(np.arange(0, 40, 2.0), 30))
    raw = pd.DataFrame({"TIME": times, "DV": 1.0, "CRCL": rng.choice([30.0, 60.0, np.nan], 30),
                        "WT": rng.choice([70.0, 71.0], 30)})
    raw.loc[0, "CRCL"] = 45.0
    history = subject_covariates(raw, covariate_interpolation=rule)
    full = raw.copy()
    filled = full["CRCL"].bfill().ffill() if rule == "nocb" else full["CRCL"].ffill().bfill()
    full["CRCL"] = filled
    assert len(history) < len(raw)
    for t in np.arange(-1.0, 42.0, 0.5):
        for name in ("CRCL", "WT"):
            assert _value_at(history, name, t, rule) == _value_at(full, name, t, rule), (t, name)


def test_the_rule_is_stored_with_the_table_and_can_be_overridden():
    table = read_nonmem(CRCL, covariate_interpolation="locf")
    assert table.attrs["covariate_interpolation"] == "locf"
    assert subject_covariates(table)["TIME"].tolist() == [0.0, 24.0, 48.0]
    assert subject_covariates(table, covariate_interpolation="nocb")["TIME"].tolist() == [12.0, 36.0, 60.0]
    assert read_nonmem(table).attrs["covariate_interpolation"] == "locf"
    assert subject_covariates(table).attrs["covariate_interpolation"] == "locf"
    assert subject_covariates(table, covariate_interpolation="nocb").attrs["covariate_interpolation"] == "nocb"
    assert read_nonmem(CRCL).attrs["covariate_interpolation"] == "nocb"
    with pytest.raises(DataError, match="covariate_interpolation must be 'nocb' or 'locf', not 'linear'"):
        read_nonmem(CRCL, covariate_interpolation="linear")


def test_text_covariates_may_change_and_constant_ones_stay_a_dict():
    raw = pd.DataFrame({"ID": [1, 1, 2, 2], "TIME": [0, 5, 0, 5], "DV": 1.0,
                        "HEART": ["mild", "severe", "mild", "mild"]})
    history = subject_covariates(raw, 1)
    assert history["HEART"].tolist() == ["mild", "severe"]
    assert subject_covariates(raw, 2) == {"HEART": "mild"}


def test_no_path_reduces_a_varying_covariate_to_its_first_value():
    table = read_nonmem(CRCL)
    for covariates in (subject_covariates(table), split_subjects(table)[1].covariates,
                       subject_data(table).covariates):
        assert isinstance(covariates, pd.DataFrame)
        assert sorted(set(covariates["CRCL"])) == [30.0, 60.0, 90.0]


# --- tidy tables are trusted only while intact; splitting is one pass ------------------------------------


def test_a_tidy_table_is_not_checked_again(monkeypatch):
    table = read_nonmem(CRCL)

    def no_reading(*args, **kwargs):
        raise AssertionError("the tidy table was read again")

    monkeypatch.setattr(data_module, "_Reader", no_reading)
    pd.testing.assert_frame_equal(read_nonmem(table), table)
    assert subject_regimen(table) == Regimen.repeat(100, every=24, count=3)
    split_subjects(table)


def test_a_changed_tidy_table_is_read_again():
    table = read_nonmem(CRCL)
    edited = table.copy()
    edited.loc[0, "AMT"] = -5.0  # in place: same columns, types and length
    assert str(error_of(edited)) == "row 1, column 'AMT': AMT must be a finite number >= 0, not -5.0"
    shuffled = table.iloc[::-1].reset_index(drop=True)
    assert "earlier than the row before" in str(error_of(shuffled))
    assert read_nonmem(table.iloc[2:]).index.tolist() == [0, 1, 2, 3]


def test_split_subjects_matches_the_per_subject_helpers():
    table = datasets.quinidine()
    split = split_subjects(table)
    assert list(split) == subjects(table)
    for subject in (1, 3, 223):
        piece = split[subject]
        assert piece.id == subject and type(piece.id) is int
        assert piece.regimen == subject_regimen(table, subject)
        for mine, theirs in zip((piece.times, piece.values, piece.blq), subject_observations(table, subject),
                                strict=True):
            np.testing.assert_array_equal(mine, theirs)
        covariates = subject_covariates(table, subject)
        if isinstance(covariates, dict):
            assert piece.covariates == covariates
        else:
            pd.testing.assert_frame_equal(piece.covariates, covariates)
        pd.testing.assert_frame_equal(piece.rows, table[table["ID"] == subject].reset_index(drop=True))


# --- the quinidine data set -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quinidine():
    return datasets.quinidine()


def _published() -> pd.DataFrame:
    return datasets.published_quinidine()


def test_quinidine_is_the_published_table(quinidine):
    published = _published()
    assert len(published) == 1471 and published["Subject"].nunique() == 136
    assert len(quinidine) == 1471 and len(subjects(quinidine)) == 136
    observations = quinidine[quinidine["EVID"] == 0]
    doses = quinidine[quinidine["EVID"] == 1]
    assert len(observations) == 361 and len(doses) == 1028 and (quinidine["EVID"] == 2).sum() == 82
    assert (doses["SS"] == 1).sum() == 249
    assert sorted(set(doses.loc[doses["SS"] == 1, "II"])) == [4.0, 6.0, 8.0, 12.0]
    # the same numbers, row for row, once both are in subject order
    order = published.sort_values("Subject", kind="stable")
    np.testing.assert_array_equal(quinidine["TIME"], order["time"])
    np.testing.assert_array_equal(quinidine["DV"], order["conc"])
    np.testing.assert_array_equal(quinidine["AMT"], order["dose"].fillna(0.0))
    np.testing.assert_array_equal(quinidine["GLYCO"], order["glyco"])
    assert quinidine.loc[0, ["ID", "TIME", "AMT", "WEIGHT", "GLYCO"]].tolist() == [1, 0.0, 249.0, 106.0, 0.41]


def test_quinidine_patient_1_has_a_steady_state_dose_and_a_changing_glycoprotein(quinidine):
    regimen = subject_regimen(quinidine, 1)
    assert Dose(201, 138, "1", steady_state=1, interval=6) in regimen.doses
    assert len(regimen.doses) == 14
    times, values, _ = subject_observations(quinidine, 1)
    np.testing.assert_array_equal(times, [49.25, 193.33])
    np.testing.assert_array_equal(values, [1.4, 3.0])
    history = subject_covariates(quinidine, 1)
    assert history["TIME"].tolist() == [49.25, 193.33]
    assert history["GLYCO"].tolist() == [0.41, 1.11]
    assert set(history["WEIGHT"]) == {106.0}


def test_quinidine_every_patient_is_dosed_before_the_first_level(quinidine):
    varying = 0
    for piece in split_subjects(quinidine).values():
        assert piece.times.size > 0
        assert piece.times.min() >= min(dose.time for dose in piece.regimen.doses)
        varying += isinstance(piece.covariates, pd.DataFrame)
    assert varying == 90  # GLYCO, WEIGHT, CREATININE, AGE, SMOKE or HEART change within 90 patients


def test_quinidine_is_reachable_from_the_top_level():
    assert kn.datasets.quinidine is datasets.quinidine
    assert kn.read_nonmem is read_nonmem


def _nlme_quinidine_model(rows: pd.DataFrame, V: float, ka: float, ke: float) -> np.ndarray:
    """nlme's own prediction for one quinidine patient, row by row as its C code (nlme_one_comp_open in
    src/nlme.c) computes it: a dose row with an interval replaces the state by the steady state of that
    dose repeated every interval; another dose row adds to the depot; the levels are the closed form."""
    conc = depot = last = 0.0
    predictions = []
    for k, (t, evid, amount, steady, interval) in enumerate(
            zip(rows["TIME"], rows["EVID"], rows["AMT"], rows["SS"], rows["II"], strict=True)):
        if evid == 1:
            if steady:
                conc = amount * ka * (1 / (1 - np.exp(-ke * interval)) - 1 / (1 - np.exp(-ka * interval))) / (
                    V * (ka - ke))
                depot = amount / (V * (1 - np.exp(-ka * interval)))
            elif k == 0:
                conc, depot = 0.0, amount / V
            else:
                dt = t - last
                conc = conc * np.exp(-ke * dt) + depot * ka * (np.exp(-ke * dt) - np.exp(-ka * dt)) / (ka - ke)
                depot = depot * np.exp(-ka * dt) + amount / V
            last = t
        elif evid == 0:
            dt = t - last
            predictions.append(conc * np.exp(-ke * dt) + depot * ka * (np.exp(-ke * dt) - np.exp(-ka * dt)) / (ka - ke))
    return np.array(predictions)


def test_quinidine_steady_state_doses_mean_what_nlme_means(quinidine):
    """Read as SS 1 doses, the data give koopnb's simulation exactly nlme's predictions for every patient."""
    model = kn.parse_model("""
        ka = 0.4 [1/h]
        CL = 9.5 [L/h]
        V = 120 [L]
        d/dt(depot) = -ka*depot
        d/dt(central) = ka*depot - CL/V*central
        conc = central / V
        dose depot
    """)
    worst = 0.0
    pieces = list(split_subjects(quinidine).values())
    with_steady_state = [piece for piece in pieces if any(dose.steady_state for dose in piece.regimen.doses)]
    assert len(with_steady_state) == 107
    for piece in with_steady_state[::7]:  # 16 patients keep the test fast; every patient agrees as well
        reference = _nlme_quinidine_model(piece.rows, 120.0, 0.4, 9.5 / 120.0)
        ours = model.simulate({"ka": 0.4, "CL": 9.5, "V": 120.0}, piece.regimen, piece.times)["conc"][0]
        worst = max(worst, float(np.max(np.abs(ours / reference - 1))))
    assert worst < 1e-10


def test_a_first_column_named_c_comments_rows_out_as_nonmem_ignore_c(tmp_path):
    path = write(tmp_path, """
        C,ID,TIME,AMT,DV
        .,1,0,100,.
        C,1,1,0,99
        .,1,2,0,5.1
        C,1,3,0,oops
        .,1,4,0,x
    """)
    with pytest.raises(DataError) as caught:
        read_nonmem(path)
    assert str(caught.value) == "row 5, column 'DV': 'x' is not a number"  # rows commented out still count
    table = read_nonmem(write(tmp_path, "C ID TIME AMT DV\n. 1 0 100 .\nC 1 1 0 99\n. 1 2 0 5.1\n", "data.dat"))
    assert "C" not in table
    np.testing.assert_array_equal(table["TIME"], [0, 2])
    np.testing.assert_array_equal(subject_observations(table)[1], [5.1])
    # a first column C that holds anything else is an ordinary column (a covariate here)
    kept = read_nonmem(pd.DataFrame({"C": [1.5, 2.5], "TIME": [0, 1], "DV": [1.0, 2.0]}))
    np.testing.assert_array_equal(kept["C"], [1.5, 2.5])


def test_a_history_from_the_data_is_simulated_by_its_own_rule():
    from koopnb.covariates import CovariateHistory

    model = kn.parse_model("""
        covariate CRCL = 60
        CL = 5 [L/h]
        V = 50 [L]
        CLi = CL * CRCL / 60
        d/dt(central) = -CLi/V*central
        conc = central / V
        dose central
    """)
    table = read_nonmem(CRCL, covariate_interpolation="locf")
    history = subject_covariates(table)[["TIME", "CRCL"]]  # the model's covariates (WT is not one)
    times = np.linspace(0.5, 70, 40)
    regimen = subject_regimen(table)
    ours = model.simulate({}, regimen, times, covariates=history)["conc"]
    bare = history.copy()
    bare.attrs = {}
    np.testing.assert_array_equal(ours, model.simulate({}, regimen, times, covariates=CovariateHistory(bare, "locf"))
                                  ["conc"])
    assert not np.allclose(ours, model.simulate({}, regimen, times, covariates=CovariateHistory(bare, "nocb"))["conc"])


def test_a_population_reads_its_table_once_not_once_per_subject(monkeypatch):
    """The fits' subject list reads and checks the table once, then splits it (linear in rows)."""
    from koopnb.inference.subjects import all_subjects

    model = kn.parse_model("""
        covariate WT = 70
        CL = 5 [L/h] ~ 0.3
        V = 50 [L] ~ 0.2
        d/dt(central) = -CL*(WT/70)/V*central
        conc = central / V
        conc ~ proportional(0.1)
        dose central
    """)
    raw = pd.DataFrame({"ID": np.repeat([1, 2, 3, 4, 5], 3), "TIME": np.tile([0.0, 1.0, 4.0], 5),
                        "AMT": np.tile([100.0, 0.0, 0.0], 5), "DV": np.tile([np.nan, 1.8, 1.2], 5),
                        "WT": np.repeat([60.0, 70.0, 80.0, 90.0, 100.0], 3)})
    calls = {"_Reader": 0, "_fingerprint": 0}  # a full read; a pass over every value (the trust check)

    def counted(name):
        original = getattr(data_module, name)

        def count(*args):
            calls[name] += 1
            return original(*args)

        return count

    for name in calls:
        monkeypatch.setattr(data_module, name, counted(name))
    found = all_subjects(model, raw, None, "conc")
    assert [subject.id for subject in found] == [1, 2, 3, 4, 5]
    assert [subject.covariates["WT"] for subject in found] == [60.0, 70.0, 80.0, 90.0, 100.0]
    assert calls == {"_Reader": 1, "_fingerprint": 2}  # not one per subject
