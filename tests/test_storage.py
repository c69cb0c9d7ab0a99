"""Posterior files: a save is atomic and cleans up after killed saves; a load checks every part of the
file and refuses, in one sentence naming the file and the part, anything it did not write — before
allocating memory the file asks for."""

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zlib

import numpy as np
import pandas as pd
import pytest

import koopnb as kn
from koopnb.errors import FitError
from koopnb.inference import PopulationPosterior, Posterior, storage
from koopnb.inference.subjects import Occasions, Subject

MODEL = """
ka = 1.5  [1/h] ~ 0.6
CL = 2.8  [L/h] ~ 27%
V  = 31.5 [L]   ~ 0.15
d/dt(depot)   = -ka*depot
d/dt(central) =  ka*depot - CL/V*central
conc = central / V
conc ~ additive(0.7)
dose depot
"""
NAMES = ("ka", "CL", "V")


@pytest.fixture(scope="module")
def model():
    return kn.parse_model(MODEL, name="theo")


def individual(model, subject_id=None, seed=0) -> Posterior:
    """A posterior built directly (no sampling): 50 draws of 8 walkers of the three parameters."""
    rng = np.random.default_rng(seed)
    draws = np.exp(np.log([1.5, 2.8, 31.5]) + 0.1 * rng.standard_normal((50, 8, 3)))
    subject = Subject(subject_id, kn.Regimen.parse("320 mg po q12h x2"), np.array([1.0, 4.0, 12.0]),
                      np.array([8.1, 6.2, 3.0]), np.array([False, False, True]), {})
    diagnostics = {"acceptance_fraction": 0.4, "autocorrelation_time": dict.fromkeys(NAMES, 20.0),
                   "effective_sample_size": dict.fromkeys(NAMES, 20.0), "burn": 10, "steps": 60, "walkers": 8}
    return Posterior(NAMES, draws, -rng.random((50, 8)), {"ka": 1.4, "CL": 2.9, "V": 30.0}, diagnostics, model,
                     subject, "conc", {})


@pytest.fixture(scope="module")
def population(model):
    rng = np.random.default_rng(5)
    names = ("ka", "CL", "V", "omega_ka", "omega_CL", "omega_V", "conc.additive")
    draws = np.exp(rng.standard_normal((40, 16, len(names))) * 0.1)
    return PopulationPosterior(names, draws, -rng.random((40, 16)), dict.fromkeys(names, 1.0),
                               {"acceptance_fraction": 0.3, "steps": 50}, model, "conc",
                               {1: individual(model, 1, 1), 2: individual(model, 2, 2)},
                               {"ka": 0.1, "CL": 0.2, "V": float("nan")})


@pytest.fixture
def saved(tmp_path, model):
    path = tmp_path / "patient.npz"
    individual(model).save(path)
    return path


def rewrite(path, change):
    """Read the file's arrays and header, let ``change(arrays, header)`` spoil them, write them back."""
    arrays, header = storage.read(path)
    change(arrays, header)
    storage.write(path, arrays, {key: value for key, value in header.items() if key != "format"})


# -------------------------------------------------------------------------------------------- round trip
def test_individual_round_trip(saved, model):
    original = individual(model)
    again = Posterior.load(saved)
    np.testing.assert_array_equal(again.draws, original.draws)
    np.testing.assert_array_equal(again.log_density, original.log_density)
    np.testing.assert_array_equal(again.subject.below, original.subject.below)
    assert again.map == original.map and again.diagnostics == original.diagnostics
    assert again.subject.regimen == original.subject.regimen and again.model.typical == model.typical


def test_population_round_trip(tmp_path, population):
    path = tmp_path / "population.npz"
    population.save(path)
    again = PopulationPosterior.load(path)
    np.testing.assert_array_equal(again.draws, population.draws)
    assert list(again.individuals) == [1, 2]
    np.testing.assert_array_equal(again.individuals[2].draws, population.individuals[2].draws)
    assert np.isnan(again.shrinkage["V"])  # one subject's shrinkage is undefined and stays so
    with pytest.raises(FitError, match=r"population posterior; read it with PopulationPosterior\.load"):
        Posterior.load(path)


def test_a_patient_with_everything_round_trips(tmp_path, model):
    """Steady state, a modelled duration, a reset, a covariate history and occasions survive save and load."""
    regimen = kn.Regimen([kn.Dose(320.0, 0.0, None, 1.0, steady_state=1, interval=12.0), kn.Dose(320.0, 12.0),
                          kn.Dose(160.0, 30.0, "central", None), kn.Dose(100.0, 36.0, steady_state=2, interval=24.0)],
                         unit="mg", resets=(24.0,))
    history = pd.DataFrame({"TIME": [0.0, 24.0], "WT": [70.0, 64.5]})
    occasions = Occasions(np.array([1, 2]), np.array([0.0, 24.0]), np.array([0, 0, 1]))
    subject = Subject("A-7", regimen, np.array([1.0, 4.0, 30.0]), np.array([8.1, 6.2, 3.0]),
                      np.array([False, False, False]), history, "locf", occasions)
    original = individual(model)
    original.subject = subject
    path = tmp_path / "everything.npz"
    original.save(path)
    again = Posterior.load(path).subject
    assert again.id == "A-7" and again.regimen == regimen and again.regimen.resets == (24.0,)
    assert [d.duration for d in again.regimen.doses] == [d.duration for d in regimen.doses]  # None stays None
    pd.testing.assert_frame_equal(again.covariates, history)
    assert again.covariate_interpolation == "locf"
    for field in ("labels", "starts", "of_observations"):
        np.testing.assert_array_equal(getattr(again.occasions, field), getattr(occasions, field))


def test_a_version_1_file_still_loads(saved, model):
    """Files of koopnb-posterior-1 held plain doses as (amount, time, duration) and constant covariates."""
    def as_version_1(arrays, header):
        arrays["doses"] = arrays["doses"][:, :3]
        for key in ("resets", "covariate_history", "covariate_interpolation"):
            header.pop(key)

    arrays, header = storage.read(saved)
    as_version_1(arrays, header)
    header["format"] = "koopnb-posterior-1"
    np.savez_compressed(saved, **arrays, koopnb_header=np.array(json.dumps(header)))
    again = Posterior.load(saved)
    assert again.subject.regimen == individual(model).subject.regimen
    np.testing.assert_array_equal(again.draws, individual(model).draws)


def test_the_population_objective_round_trips(tmp_path, population):
    population.ofv = 123.25
    path = tmp_path / "population.npz"
    population.save(path)
    assert PopulationPosterior.load(path).ofv == 123.25


# -------------------------------------------------------------------------------------------- bad contents
@pytest.mark.parametrize("key", ["names", "map", "diagnostics", "output", "fixed", "cmt", "model_text",
                                 "parameters", "errors"])
def test_a_missing_header_key_is_named(saved, key):
    rewrite(saved, lambda arrays, header: header.pop(key))
    with pytest.raises(FitError, match=f"patient.npz' is not a valid koopnb posterior file: .*'{key}'"):
        Posterior.load(saved)


@pytest.mark.parametrize("key", ["draws", "log_density", "times", "values", "below", "doses"])
def test_a_missing_array_is_named(saved, key):
    rewrite(saved, lambda arrays, header: arrays.pop(key))
    with pytest.raises(FitError, match=f"it has no array '{key}'"):
        Posterior.load(saved)


@pytest.mark.parametrize(("change", "message"), [
    (lambda a, h: a.update(draws=a["draws"][:, :, :2]), r"draws have shape \(50, 8, 2\), not .*3 parameters"),
    (lambda a, h: a.update(draws=a["draws"][:0]), r"draws have shape \(0, 8, 3\)"),
    (lambda a, h: a.update(log_density=a["log_density"][:, :7]), r"log-density has shape \(50, 7\), not \(50, 8\)"),
    (lambda a, h: a.update(values=a["values"][:2]), "lengths 3, 2, 3, not one length"),
    (lambda a, h: a.update(below=a["values"]), "array 'below' is 1-D float64, not 1-D boolean"),
    (lambda a, h: a.update(doses=a["doses"][:, :2]),
     r"doses have shape \(2, 2\), not \(2, 5\) \(amount, time, duration, steady_state, interval"),
    (lambda a, h: a.update(draws=a["draws"].ravel()), "array 'draws' is 1-D float64, not 3-D numbers"),
    (lambda a, h: a.update(stray=np.zeros(3)), "array 'stray' that no part of the posterior uses"),
    (lambda a, h: h.update(names=["ka", "CL", "CL"]), "'names' must list distinct parameter names"),
    (lambda a, h: h.update(map={"ka": 1.0}), r"'map' names \['ka'\], not the sampled parameters"),
    (lambda a, h: h.update(cmt=[None]), r"doses have shape \(2, 5\), not \(1, 5\)"),
    (lambda a, h: h.update(kind="weird"), "holds no kind of posterior"),
    (lambda a, h: h.update(parameters={**h["parameters"], "CL": [2.8, -1.0]}), "'CL' must be stored as"),
    (lambda a, h: h.update(errors={"conc": ["uniform", 0.7, 0, 0]}), "error model of 'conc' must be stored as"),
    (lambda a, h: h.update(output="auc"), "'auc' is not an output of the stored model"),
    (lambda a, h: h.update(names=["ka", "CL", "Vd"], map={"ka": 1, "CL": 1, "Vd": 1}),
     "'Vd' is not a parameter of the stored model"),
    (lambda a, h: h.update(diagnostics={"autocorrelation_time": [1, 2]}), "'autocorrelation_time' must map"),
    (lambda a, h: h.update(resets=[-1]), "the reset time -1 is not a finite number >= 0"),
    (lambda a, h: h.update(covariate_interpolation="linear"), "'covariate_interpolation' must be 'nocb' or 'locf'"),
    (lambda a, h: h.update(covariate_history={"WT": [70.0]}), "'covariate_history' must hold a TIME column"),
    (lambda a, h: a.update(occasion_labels=np.array([1, 2]), occasion_starts=np.array([0.0, 12.0]),
                           occasion_of_observations=np.array([0, 1, 2])), "the occasions do not fit together"),
    (lambda a, h: a.update(occasion_labels=np.array([1])), "it has no array 'occasion_starts'"),
])
def test_inconsistent_contents_are_one_sentence(saved, change, message):
    rewrite(saved, change)
    with pytest.raises(FitError, match=message):
        Posterior.load(saved)


@pytest.mark.parametrize("array", ["draws", "log_density", "times", "doses"])
def test_non_finite_numbers_are_refused(saved, array):
    def spoil(arrays, header):
        arrays[array] = arrays[array].copy()
        arrays[array].flat[1] = np.nan

    rewrite(saved, spoil)
    with pytest.raises(FitError, match=r"hold nan at index \((0, )*1,?\) \(1 non-finite in all\)"):
        Posterior.load(saved)


@pytest.mark.parametrize(("change", "message"), [
    (lambda h: h.update(names=["ka", "CL", "V", "omega_ka", "omega_CL", "omega_V", "V2"]),
     "'V2' is not a parameter of the stored model"),
    (lambda h: h.update(names=["ka", "CL", "omega_Q", "omega_ka", "omega_CL", "omega_V", "conc.additive"]),
     "the population draws have no typical value of 'V'"),
    (lambda h: h.update(shrinkage={"ka": 0.1}), r"'shrinkage' names \['ka'\], not the parameters with IIV"),
    (lambda h: h.update(names=["ka", "CL", "V", "omega_ka", "omega_CL", "omega_V", "corr_CL_Q"]),
     "'corr_CL_Q' is not a parameter of the stored model"),
])
def test_population_names_must_fit_the_model(tmp_path, population, change, message):
    """(A maximum-likelihood fit with correlated IIV also samples corr_A_B of two parameters.)"""
    path = tmp_path / "population.npz"
    population.save(path)
    rewrite(path, lambda arrays, header: (change(header), header.update(map=dict.fromkeys(header["names"], 1.0))))
    with pytest.raises(FitError, match=message):
        PopulationPosterior.load(path)


def test_a_correlation_of_two_parameters_is_a_known_name(tmp_path, population):
    path = tmp_path / "population.npz"
    population.save(path)
    names = ["ka", "CL", "V", "omega_ka", "omega_CL", "omega_V", "corr_CL_V"]
    rewrite(path, lambda arrays, header: header.update(names=names, map=dict.fromkeys(names, 0.5)))
    assert PopulationPosterior.load(path).names == tuple(names)


def test_nan_in_a_subject_of_a_population_file_names_the_subject(tmp_path, population):
    path = tmp_path / "population.npz"
    population.save(path)

    def spoil(arrays, header):
        arrays["subject1_draws"] = arrays["subject1_draws"].copy()
        arrays["subject1_draws"][3, 2, 1] = np.inf

    rewrite(path, spoil)
    with pytest.raises(FitError, match=r"subject subject1: the draws hold inf at index \(3, 2, 1\)"):
        PopulationPosterior.load(path)


@pytest.mark.parametrize("deep", ["conc = " + "(" * 100 + "central" + ")" * 100 + " / V",
                                  "conc = central" + "**V" * 100 + " / V"])
def test_a_deeply_nested_model_text_is_refused_by_the_parser(saved, deep):
    rewrite(saved, lambda arrays, header: header.update(model_text=MODEL.replace("conc = central / V", deep)))
    with pytest.raises(FitError, match=r"its model text does not parse .*nested"):
        Posterior.load(saved)


def test_a_model_text_that_is_code_is_never_run(saved, tmp_path):
    marker = tmp_path / "ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    rewrite(saved, lambda arrays, header: header.update(model_text=MODEL + f"x = {code}\n"))
    with pytest.raises(FitError, match="its model text does not parse"):
        Posterior.load(saved)
    assert not marker.exists()


# -------------------------------------------------------------------------------------------- bad files
def test_a_pickled_member_is_refused(saved):
    arrays, header = storage.read(saved)
    payload = {**arrays, "draws": np.array([{"x": 1}], dtype=object), storage.HEADER: np.array(json.dumps(header))}
    np.savez(saved, **payload, allow_pickle=True)
    with pytest.raises(FitError, match="array 'draws' holds object, not numbers"):
        Posterior.load(saved)


@pytest.mark.parametrize(("header", "message"), [
    ("[" * 100_000 + "]" * 100_000, "the koopnb header is not valid JSON"),
    ("[1, 2]", "the koopnb header is not a JSON object"),
    ('{"format": "koopnb-posterior-9"}', "has format 'koopnb-posterior-9'"),
])
def test_a_bad_header_is_one_sentence(tmp_path, header, message):
    path = tmp_path / "bad.npz"
    np.savez(path, koopnb_header=np.array(header))
    with pytest.raises(FitError, match=message):
        Posterior.load(path)


def test_an_overlong_header_is_refused_before_reading_it(tmp_path):
    path = tmp_path / "long.npz"
    np.savez(path, koopnb_header=np.array("{" + " " * storage.MAX_HEADER + "}"))
    with pytest.raises(FitError, match="its koopnb header is longer than 16,777,216 characters"):
        Posterior.load(path)


def test_other_files_are_one_sentence(tmp_path):
    (tmp_path / "notes.npz").write_text("not a zip")
    with pytest.raises(FitError, match=r"'.*notes\.npz' is not a readable koopnb posterior file"):
        Posterior.load(tmp_path / "notes.npz")
    with pytest.raises(FitError, match="is a directory, not a posterior file"):
        Posterior.load(tmp_path)


def zip_member(name: str, header: bytes, zeros: int, chunk: int = 10**7) -> tuple[bytes, bytes]:
    """A deflated zip member ``header`` + ``zeros`` zero bytes (multiple of ``chunk``), built from one
    compressed chunk repeated (a full flush makes each chunk's blocks independent); its local header
    and its central directory entry (to be placed at offset 0)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(chunk)) + compressor.flush(zlib.Z_FULL_FLUSH)
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = head.compress(header) + head.flush(zlib.Z_FULL_FLUSH) + block * (zeros // chunk)
    data += zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block ends the stream
    crc = zlib.crc32(header)
    zero_chunk = bytes(chunk)
    for _ in range(zeros // chunk):
        crc = zlib.crc32(zero_chunk, crc)
    size = len(header) + zeros
    fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(name))
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", *fields, 0) + name.encode() + data
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, *fields, 0, 0, 0, 0, 0, 0) + name.encode()
    return local, central


def test_a_small_file_that_would_allocate_gigabytes_is_refused_before_allocating(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (200_000_000,)})
    local, central = zip_member("draws.npy", header.getvalue(), 1_600_000_000)
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local), 0)
    path = tmp_path / "bomb.npz"
    path.write_bytes(local + central + end)
    assert os.path.getsize(path) < 2 * 2**20
    with np.load(path) as archive:  # a valid file: numpy itself would read the 1.6 GB array
        assert archive.files == ["draws"]
    tracemalloc.start()
    try:
        with pytest.raises(FitError, match=r"would need more than 512 MiB .*\(200000000,\) of float64.*refused"):
            Posterior.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_the_memory_limit_can_be_raised_for_a_trusted_file(saved):
    with pytest.raises(FitError, match="would need more than 0 MiB"):
        Posterior.load(saved, max_bytes=1000)
    assert Posterior.load(saved, max_bytes=10**6).draws.shape == (50, 8, 3)


# -------------------------------------------------------------------------------------------- saving
def test_save_into_a_missing_directory_names_the_users_path(tmp_path, model):
    path = tmp_path / "no" / "such" / "patient.npz"
    with pytest.raises(FitError) as caught:
        individual(model).save(path)
    message = str(caught.value)
    assert message == f"cannot save to {str(path)!r}: the directory {str(path.parent)!r} does not exist"
    assert storage.TEMPORARY_PREFIX not in message


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_a_saved_file_has_the_mode_of_any_file_the_user_writes(saved):
    reference = saved.parent / "reference.txt"
    reference.write_text("")  # open() applies the umask to 0o666, as the save must
    assert saved.stat().st_mode == reference.stat().st_mode


def test_a_failure_mid_write_leaves_the_old_file(saved, model, monkeypatch):
    before = saved.read_bytes()
    real = np.savez_compressed

    def half_then_fail(stream, **arrays):
        real(stream, **arrays)
        stream.truncate(stream.tell() // 2)  # half a file is on disk when the failure strikes
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez_compressed", half_then_fail)
    with pytest.raises(FitError, match=r"cannot save to '.*patient.npz': No space left on device"):
        individual(model, seed=9).save(saved)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == ["patient.npz"]  # the temporary file is gone too


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from koopnb.inference import storage

    def write_then_die(stream, **arrays):
        stream.write(b"PK\\x03\\x04 half of a file")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    np.savez_compressed = write_then_die
    storage.write(sys.argv[1], {"x": np.arange(3.0)}, {"kind": "individual"})
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_a_killed_save_leaves_the_old_file_and_its_leftover_is_cleaned_later(saved, model):
    before = saved.read_bytes()
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(saved)], capture_output=True)
    assert killed.returncode == -9
    assert saved.read_bytes() == before  # the old file, whole
    (leftover,) = [name for name in os.listdir(saved.parent) if name != "patient.npz"]
    assert leftover.startswith(storage.TEMPORARY_PREFIX) and leftover.endswith(storage.TEMPORARY_SUFFIX)
    fresh = saved.parent / f"{storage.TEMPORARY_PREFIX}in-progress{storage.TEMPORARY_SUFFIX}"
    fresh.write_bytes(b"another process is saving right now")

    individual(model).save(saved)  # the leftover is recent: it could be a save still running, so it stays
    assert sorted(os.listdir(saved.parent)) == sorted([leftover, fresh.name, "patient.npz"])

    an_hour_ago = time.time() - storage.STALE_AFTER - 60
    os.utime(saved.parent / leftover, (an_hour_ago, an_hour_ago))
    individual(model).save(saved)
    assert sorted(os.listdir(saved.parent)) == sorted([fresh.name, "patient.npz"])
    assert Posterior.load(saved).draws.shape == (50, 8, 3)


def test_a_maximum_likelihood_fit_round_trips(tmp_path):
    """An ML (FOCE-I) fit with correlated IIV keeps its OFV, standard errors, full Ω (the off-diagonal
    covariance) and Σ through save and load; a standard error that is not a number is named on load."""
    model = kn.parse_model("""
B = 2.0 ~ 0.4
C = 1.5 ~ 0.3
corr(B, C) = 0.3
d/dt(x) = 1
level = 10 + log(B) + x * log(C)
level ~ additive(0.3)
""")
    rng = np.random.default_rng(5)
    rows = []
    for subject in range(1, 21):
        eta = rng.multivariate_normal(np.zeros(2), [[0.16, 0.06], [0.06, 0.09]])
        rows += [{"ID": subject, "TIME": t, "DV": 10 + np.log(2.0) + eta[0] + t * (np.log(1.5) + eta[1])
                  + 0.3 * rng.standard_normal()} for t in (1.0, 2.0, 4.0, 6.0)]
    fit = kn.fit_population(model, pd.DataFrame(rows), method="ml")
    path = tmp_path / "ml.npz"
    fit.save(path)
    again = PopulationPosterior.load(path)
    assert again.ofv == fit.ofv
    assert again.standard_errors == fit.standard_errors
    assert set(again.standard_errors) == {"B", "C", "omega_B", "omega_C", "corr_B_C", "level.additive"}
    assert fit.omega[0, 1] != 0
    np.testing.assert_allclose(again.omega, fit.omega, rtol=1e-12)
    assert again.sigma == pytest.approx(fit.sigma, rel=1e-12)
    assert again.typical == pytest.approx(fit.typical, rel=1e-12)
    np.testing.assert_allclose(again.to_model().omega, fit.omega, rtol=1e-12)
    rewrite(path, lambda arrays, header: header["standard_errors"].update(B="big"))
    with pytest.raises(FitError, match="'standard_errors' must map each sampled parameter to a non-negative number"):
        PopulationPosterior.load(path)
