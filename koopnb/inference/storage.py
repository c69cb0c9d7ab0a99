"""Posteriors on disk: one portable .npz file (arrays plus a JSON header), written atomically, read with
every part checked.

Writing: the file is written to a temporary ``.koopnb-*.tmp`` in the target's directory, flushed and
fsync'ed, then moved over the target with ``os.replace`` (atomic on POSIX and Windows) and the directory
fsync'ed: a crash mid-write leaves the old file, never half of a new one.  Temporaries left by a killed
save are removed by the next save to that directory once they are older than :data:`STALE_AFTER`.

Reading trusts nothing but the zip and .npy formats: before any array is read, every member's .npy
header is read and the memory the arrays would take is summed and refused past ``max_bytes``
(:data:`MAX_BYTES` by default); pickles are never loaded; then the header's keys and types, the arrays'
dtypes and shapes, their agreement with each other and finite draws are checked
(:func:`check_individual`, :func:`check_population`, :func:`check_model_header`).  Each failure is one
:class:`FitError` sentence naming the file and the part that is wrong.
"""

from __future__ import annotations

import glob
import json
import math
import os
import secrets
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import pandas as pd

from koopnb.errors import FitError, KoopnbError
from koopnb.inference.subjects import Occasions, Subject, kappa_name
from koopnb.regimen import Dose, Regimen

HEADER = "koopnb_header"
FORMAT = "koopnb-posterior-2"
VERSIONS = {"koopnb-posterior-1": 1, FORMAT: 2}
"""Formats this koopnb reads: version 1 held plain doses (amount, time, duration) and constant covariates."""
DOSE_COLUMNS = ("amount", "time", "duration", "steady_state", "interval")
"""Columns of a subject's doses array: NaN duration = modelled by the model (NONMEM RATE=-2), NaN interval =
no steady state."""
SUBJECT_ARRAYS = ("times", "values", "below", "doses")
OCCASION_ARRAYS = ("occasion_labels", "occasion_starts", "occasion_of_observations")
MAX_BYTES = 512 * 2**20
"""Largest memory (bytes) the arrays of a posterior file may need when loaded: 512 MiB, room for 100
subjects' chains of 64 walkers × 2,000 draws × 3 parameters (290 MiB).  A larger file is refused before
any array is read; ``load(path, max_bytes=...)`` raises the limit for a file you trust."""
MAX_HEADER = 16 * 2**20
"""Longest JSON header (characters) read: 16 Mi, some thousand times what a subject's entry takes (its
parsed form costs several times its length in Python objects, hence a limit of its own)."""
STALE_AFTER = 3600.0
"""Age (s) after which a temporary file of an interrupted save is removed by the next save beside it;
a save in progress in another process is far younger."""
TEMPORARY_PREFIX = ".koopnb-"
TEMPORARY_SUFFIX = ".tmp"
_ARRAY_KINDS = "biuf"  # numbers and booleans; the header alone is text
_ERROR_KINDS = ("additive", "proportional", "combined", "exponential")


# -- writing ----------------------------------------------------------------------------------------
def write(path: str | os.PathLike, arrays: dict[str, np.ndarray], header: dict) -> None:
    """Write ``arrays`` and the JSON-serialisable ``header`` to ``path`` atomically.

    Raises a FitError naming ``path`` when the directory does not exist or the file cannot be written.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FitError(f"cannot save to {path!r}: the directory {directory!r} does not exist")
    remove_stale_temporaries(directory)
    payload = {**arrays, HEADER: np.array(json.dumps({"format": FORMAT, **header}))}
    temporary = os.path.join(directory, f"{TEMPORARY_PREFIX}{secrets.token_hex(8)}{TEMPORARY_SUFFIX}")
    try:
        # Created like any file the user writes (mode 0o666 less the umask), unlike mkstemp's private 0o600.
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as error:
        raise FitError(f"cannot save to {path!r}: {error.strerror or error}") from error
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, **payload)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
        _sync_directory(directory)
    except OSError as error:
        raise FitError(f"cannot save to {path!r}: {error.strerror or error}") from error
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _sync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); elsewhere the replace is atomic but its flush is the system's."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_stale_temporaries(directory: str, older_than: float = STALE_AFTER) -> list[str]:
    """Remove the temporary files of saves into ``directory`` that were interrupted more than
    ``older_than`` seconds ago; returns their paths."""
    removed = []
    now = time.time()
    for leftover in glob.glob(os.path.join(glob.escape(directory), f"{TEMPORARY_PREFIX}*{TEMPORARY_SUFFIX}")):
        try:
            if now - os.path.getmtime(leftover) > older_than and os.path.isfile(leftover):
                os.unlink(leftover)
                removed.append(leftover)
        except OSError:
            continue  # gone already (another save cleaned it) or not ours to remove: leave it
    return removed


# -- reading ----------------------------------------------------------------------------------------
def read(path: str | os.PathLike, max_bytes: int = MAX_BYTES) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header of a file written by :func:`write`, refused before allocation when the arrays
    would need more than ``max_bytes``.  The header's format is checked here; its contents by the
    ``check_*`` functions."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise FitError(f"{path!r} is a directory, not a posterior file")
    try:
        with zipfile.ZipFile(path) as archive:
            members = _check_members(archive, path, max_bytes)
            arrays = {}
            for name, info in members.items():
                with archive.open(info) as stream:
                    arrays[name] = np.lib.format.read_array(stream, allow_pickle=False)
    except FileNotFoundError:
        raise FitError(f"there is no posterior file {path!r}") from None
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError, OSError, RuntimeError, NotImplementedError) as error:
        raise FitError(f"{path!r} is not a readable koopnb posterior file ({error})") from None
    header = arrays.pop(HEADER, None)
    if header is None:
        raise FitError(f"{path!r} is not a koopnb posterior file (it has no koopnb header)")
    if header.shape != () or header.dtype.kind != "U":
        raise FitError(f"{path!r}: the koopnb header is not one JSON text")
    try:
        header = json.loads(str(header[()]))
    except (ValueError, RecursionError) as error:
        raise FitError(f"{path!r}: the koopnb header is not valid JSON ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise FitError(f"{path!r}: the koopnb header is not a JSON object")
    if header.get("format") not in VERSIONS:
        raise FitError(f"{path!r} has format {header.get('format')!r}; this koopnb reads "
                       f"{' and '.join(map(repr, VERSIONS))}")
    return arrays, header


# -- a patient's data in the file --------------------------------------------------------------------
def subject_payload(subject: Subject, prefix: str) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and header entries that hold ``subject`` whole: observations, every dose (steady state
    and modelled durations included), resets, constant covariates or their history, occasions."""
    doses = subject.regimen.doses
    table = np.array([[d.amount, d.time, np.nan if d.duration is None else d.duration, int(d.steady_state),
                       np.nan if d.interval is None else d.interval] for d in doses], dtype=float)
    arrays = {f"{prefix}times": subject.times, f"{prefix}values": subject.values, f"{prefix}below": subject.below,
              f"{prefix}doses": table.reshape(len(doses), len(DOSE_COLUMNS))}
    history = subject.covariates if isinstance(subject.covariates, pd.DataFrame) else None
    if subject.occasions is not None:
        occasions = subject.occasions
        arrays |= {f"{prefix}occasion_labels": np.asarray(occasions.labels),
                   f"{prefix}occasion_starts": np.asarray(occasions.starts, dtype=float),
                   f"{prefix}occasion_of_observations": np.asarray(occasions.of_observations)}
    header = {"subject": subject.id.item() if isinstance(subject.id, np.generic) else subject.id,
              "cmt": [d.cmt for d in doses], "unit": subject.regimen.unit, "resets": list(subject.regimen.resets),
              "covariates": None if history is not None else {k: float(v) for k, v in subject.covariates.items()},
              "covariate_history": None if history is None else {str(column): history[column].astype(float).tolist()
                                                                 for column in history.columns},
              "covariate_interpolation": subject.covariate_interpolation}
    return arrays, header


def subject_from_payload(arrays: Mapping[str, np.ndarray], header: Mapping, prefix: str) -> Subject:
    """The subject :func:`subject_payload` wrote (after :func:`check_individual`)."""
    table = arrays[f"{prefix}doses"]
    if table.shape[1] < len(DOSE_COLUMNS):  # version 1: plain doses
        table = np.hstack([table, np.zeros((len(table), 1)), np.full((len(table), 1), np.nan)])
    doses = [Dose(amount, time, cmt, None if np.isnan(duration) else duration, int(steady),
                  None if np.isnan(interval) else interval)
             for (amount, time, duration, steady, interval), cmt in zip(table, header["cmt"], strict=True)]
    history = header.get("covariate_history")
    occasions = (Occasions(*(arrays[f"{prefix}{name}"] for name in OCCASION_ARRAYS))
                 if f"{prefix}occasion_labels" in arrays else None)
    return Subject(header["subject"], Regimen(doses, unit=header["unit"], resets=header.get("resets", ())),
                   arrays[f"{prefix}times"], arrays[f"{prefix}values"], arrays[f"{prefix}below"],
                   header["covariates"] if history is None else pd.DataFrame(history),
                   header.get("covariate_interpolation", "nocb"), occasions)


def _check_members(archive: zipfile.ZipFile, path: str, max_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Every member of the archive by array name, after reading only the .npy headers: each must be a
    numeric (or, for the header, text) array, and together they must fit in ``max_bytes``."""
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in members:
            raise FitError(f"{path!r}: the member {info.filename!r} is not a (single) numpy array")
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise FitError(f"{path!r}: array {name!r} is in .npy format version {version}, which koopnb does "
                               "not write")
        if dtype.hasobject or dtype.kind not in (_ARRAY_KINDS + "U" if name == HEADER else _ARRAY_KINDS):
            raise FitError(f"{path!r}: array {name!r} holds {dtype}, not numbers")
        if name == HEADER and math.prod(shape) * dtype.itemsize > 4 * MAX_HEADER:  # 4 bytes per character
            raise FitError(f"{path!r}: its koopnb header is longer than {MAX_HEADER:,} characters")
        if any(n < 0 for n in shape):
            raise FitError(f"{path!r}: array {name!r} has a negative length in its shape {shape}")
        total += math.prod(shape) * dtype.itemsize
        if total > max_bytes:
            raise FitError(f"{path!r} would need more than {max_bytes / 2**20:.0f} MiB of memory to load (its "
                           f"array {name!r} alone is {shape} of {dtype}); refused before allocating it — pass "
                           "max_bytes= to load a larger file you trust")
        members[name] = info
    return members


# -- checking the contents --------------------------------------------------------------------------
def check_individual(arrays: Mapping[str, np.ndarray], header: Mapping, path: str, prefix: str = "",
                     version: int | None = None) -> None:
    """Check one individual posterior's header entries and arrays (``prefix`` for those inside a
    population file, ``version`` of the file format): draws (n_draws, n_walkers, k) finite with k names,
    the log-density (n_draws, n_walkers), and the subject (:func:`_check_subject`)."""
    version = VERSIONS[header["format"]] if version is None else version
    where = _Where(path, f"subject {prefix[:-1]}: " if prefix else "")
    names = where.names(header, "names")
    where.numbers(header, "map", keys=names)
    where.diagnostics(header)
    where.text(header, "output")
    fixed = where.numbers(header, "fixed")
    if set(fixed) & set(names):
        where.fail(f"parameter {sorted(set(fixed) & set(names))[0]!r} is both sampled and fixed")
    draws = where.array(arrays, f"{prefix}draws", "f", 3)
    if min(draws.shape) == 0 or draws.shape[2] != len(names):
        where.fail(f"the draws have shape {draws.shape}, not (draws ≥ 1, walkers ≥ 1, {len(names)} parameters)")
    where.finite(draws, "draws")
    log_density = where.array(arrays, f"{prefix}log_density", "f", 2)
    if log_density.shape != draws.shape[:2]:
        where.fail(f"the log-density has shape {log_density.shape}, not {draws.shape[:2]} like the draws")
    where.finite(log_density, "log-density")
    _check_subject(arrays, header, where, prefix, version)
    if not prefix:
        extra = sorted(set(arrays) - {"draws", "log_density", *SUBJECT_ARRAYS, *OCCASION_ARRAYS})
        if extra:
            where.fail(f"it holds an array {extra[0]!r} that no part of the posterior uses")


def _check_subject(arrays: Mapping[str, np.ndarray], header: Mapping, where: _Where, prefix: str,
                   version: int) -> None:
    """The subject's ID, observations (n,), doses (n_doses, 3 or 5 columns), resets, covariates and occasions."""
    if not isinstance(header.get("subject"), (str, int, float, type(None))) or isinstance(header["subject"], bool):
        where.fail("the subject ID is missing or not a number or text")
    cmt = where.field(header, "cmt", list)
    if not all(c is None or isinstance(c, str) for c in cmt):
        where.fail("'cmt' must list compartment names (or null)")
    if header.get("unit") is not None and not isinstance(header["unit"], str):
        where.fail("'unit' must be text or null")
    times = where.array(arrays, f"{prefix}times", "f", 1)
    values = where.array(arrays, f"{prefix}values", "f", 1)
    below = where.array(arrays, f"{prefix}below", "b", 1)
    if not times.shape == values.shape == below.shape:
        where.fail(f"times, values and below have lengths {times.size}, {values.size}, {below.size}, not one length")
    where.finite(times, "observation times")
    where.finite(values, "observations")
    doses = where.array(arrays, f"{prefix}doses", "f", 2)
    columns = 3 if version == 1 else len(DOSE_COLUMNS)
    if doses.shape != (len(cmt), columns):
        where.fail(f"the doses have shape {doses.shape}, not ({len(cmt)}, {columns}) "
                   f"({', '.join(DOSE_COLUMNS[:columns])} per dose)")
    # NaN has a meaning in two columns only: a modelled duration, no steady-state interval.
    where.finite(doses[:, [0, 1, 3]] if version > 1 else doses, "dose amounts and times")
    if np.any(np.isinf(doses)) or np.any(doses < 0) or np.any(times < 0):
        where.fail("a dose or an observation time is negative or infinite")
    if version == 1:
        where.numbers(header, "covariates")
        return
    for reset in where.field(header, "resets", list):
        if not _finite(reset) or reset < 0:
            where.fail(f"the reset time {reset!r} is not a finite number >= 0")
    if header.get("covariate_interpolation") not in ("nocb", "locf"):
        where.fail("'covariate_interpolation' must be 'nocb' or 'locf'")
    history = header.get("covariate_history")
    if history is None:
        where.numbers(header, "covariates")
    else:
        columns = where.field(header, "covariate_history", dict)
        lengths = {len(column) if isinstance(column, list) else -1 for column in columns.values()}
        if "TIME" not in columns or len(lengths) != 1 or -1 in lengths or not all(
                _finite(v) for column in columns.values() for v in column):
            where.fail("'covariate_history' must hold a TIME column and covariate columns of finite numbers, "
                       "all of one length")
    present = [f"{prefix}{name}" in arrays for name in OCCASION_ARRAYS]
    if any(present):
        labels = where.array(arrays, f"{prefix}occasion_labels", "i", 1)
        starts = where.array(arrays, f"{prefix}occasion_starts", "f", 1)
        index = where.array(arrays, f"{prefix}occasion_of_observations", "i", 1)
        where.finite(starts, "occasion starts")
        if labels.size == 0 or starts.shape != labels.shape or index.shape != times.shape or (
                index.size and not 0 <= index.min() <= index.max() < labels.size):
            where.fail(f"the occasions do not fit together: {labels.size} labels, {starts.size} starts and "
                       f"{index.size} occasion indices (of 0..{labels.size - 1}) for {times.size} observations")


def check_population(arrays: Mapping[str, np.ndarray], header: Mapping, path: str) -> None:
    """Check a population posterior file: its draws, names, MAP, shrinkage, every individual posterior in
    it, and that it holds no other arrays."""
    where = _Where(path, "")
    names = where.names(header, "names")
    where.numbers(header, "map", keys=names)
    where.diagnostics(header)
    where.text(header, "output")
    if "ofv" in header and not (isinstance(header["ofv"], (int, float)) and not isinstance(header["ofv"], bool)):
        where.fail("'ofv' must be a number")
    if "standard_errors" in header:  # a maximum-likelihood fit's: finite and non-negative, or NaN (R singular)
        errors = where.field(header, "standard_errors", dict)
        if set(errors) != set(names) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and (math.isnan(v) or 0 <= v < math.inf)
                for v in errors.values()):
            where.fail("'standard_errors' must map each sampled parameter to a non-negative number or NaN")
    shrinkage = where.field(header, "shrinkage", dict)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in shrinkage.values()):
        where.fail("'shrinkage' must map names to numbers")
    draws = where.array(arrays, "draws", "f", 3)
    if min(draws.shape) == 0 or draws.shape[2] != len(names):
        where.fail(f"the draws have shape {draws.shape}, not (draws ≥ 1, walkers ≥ 1, {len(names)} parameters)")
    where.finite(draws, "draws")
    log_density = where.array(arrays, "log_density", "f", 2)
    if log_density.shape != draws.shape[:2]:
        where.fail(f"the log-density has shape {log_density.shape}, not {draws.shape[:2]} like the draws")
    where.finite(log_density, "log-density")
    individuals = where.field(header, "individuals", list)
    expected = {"draws", "log_density"}
    seen = set()
    for i, part in enumerate(individuals):
        if not isinstance(part, dict):
            where.fail(f"individual {i} is not a JSON object")
        check_individual(arrays, part, path, f"subject{i}_", VERSIONS[header["format"]])
        if part["subject"] in seen:
            where.fail(f"subject {part['subject']!r} appears twice")
        seen.add(part["subject"])
        expected |= {f"subject{i}_{name}" for name in ("draws", "log_density", *SUBJECT_ARRAYS, *OCCASION_ARRAYS)}
    extra = sorted(set(arrays) - expected)
    if extra:
        where.fail(f"it holds an array {extra[0]!r} that no part of the posterior uses")


def check_model_header(header: Mapping, path: str) -> None:
    """Check the stored model: its text, name, typical values and omegas, residual error parameters."""
    where = _Where(path, "")
    where.text(header, "model_text")
    if header.get("model_name") is not None and not isinstance(header["model_name"], str):
        where.fail("'model_name' must be text or null")
    for name, value in where.field(header, "parameters", dict).items():
        if not (isinstance(value, list) and len(value) == 2 and all(_finite(v) for v in value) and value[1] >= 0):
            where.fail(f"parameter {name!r} must be stored as [typical, omega ≥ 0], finite numbers, not {value!r}")
    for name, value in where.field(header, "errors", dict).items():
        if not (isinstance(value, list) and len(value) == 4 and value[0] in _ERROR_KINDS
                and all(_finite(v) and v >= 0 for v in value[1:])):
            where.fail(f"the error model of {name!r} must be stored as [kind, additive, proportional, sigma] with "
                       f"a known kind and numbers ≥ 0, not {value!r}")


def check_names_in_model(header: Mapping, parameters, outputs, path: str, individual: bool) -> None:
    """Check that the names the file uses exist in the model parsed from its text."""
    where = _Where(path, "")
    unknown = [name for name in header["parameters"] if name not in parameters]
    if individual:
        # An occasion's random effect is sampled as kappa_NAME_occLABEL (koopnb.inference.subjects.kappa_name).
        unknown += [name for name in [*header["names"], *header["fixed"]] if name not in parameters
                    and not any(name.startswith(kappa_name(p, "")) for p in parameters)]
    else:
        # Population sample names: every parameter's typical value, omega_NAME / iov_NAME of parameters,
        # corr_A_B (maximum-likelihood fits with correlated IIV) and OUTPUT.additive / .proportional / .sigma
        # (koopnb.inference.population, koopnb.inference.foce).
        names = header["names"]
        known = {*parameters, *(f"{kind}_{p}" for kind in ("omega", "iov") for p in parameters),
                 *(f"corr_{a}_{b}" for a in parameters for b in parameters if a != b)}
        unknown += [name for name in names if name not in known and not name.startswith(f"{header['output']}.")]
        missing = [name for name in parameters if name not in names]
        if missing:
            where.fail(f"the population draws have no typical value of {missing[0]!r}")
        omegas = {name[6:] for name in names if name.startswith("omega_")}
        if set(header["shrinkage"]) != omegas:
            where.fail(f"'shrinkage' names {sorted(header['shrinkage'])}, not the parameters with IIV {sorted(omegas)}")
    if unknown:
        where.fail(f"parameter {unknown[0]!r} is not a parameter of the stored model")
    for name in [header["output"], *header["errors"]]:
        if name not in outputs:
            where.fail(f"{name!r} is not an output of the stored model")


@contextmanager
def naming(path) -> Iterator[None]:
    """Turn a koopnb error raised while rebuilding objects from a checked file into a FitError naming it."""
    try:
        yield
    except KoopnbError as error:
        raise FitError(f"{os.fspath(path)!r} is not a valid koopnb posterior file: {error}") from None


class _Where:
    """Failure sentences naming the file (and the subject inside a population file)."""

    def __init__(self, path: str, context: str):
        self.path = path
        self.context = context

    def fail(self, what: str):
        raise FitError(f"{self.path!r} is not a valid koopnb posterior file: {self.context}{what}")

    def field(self, header: Mapping, key: str, kind: type):
        if key not in header:
            self.fail(f"the header has no {key!r}")
        if not isinstance(header[key], kind):
            wanted = "a JSON object" if kind is dict else "a list"
            self.fail(f"{key!r} must be {wanted}, not {type(header[key]).__name__}")
        return header[key]

    def text(self, header: Mapping, key: str) -> str:
        if not isinstance(header.get(key), str):
            self.fail(f"the header has no text {key!r}")
        return header[key]

    def names(self, header: Mapping, key: str) -> list[str]:
        names = self.field(header, key, list)
        if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            self.fail(f"{key!r} must list distinct parameter names")
        return names

    def numbers(self, header: Mapping, key: str, keys: list[str] | None = None) -> dict[str, float]:
        values = self.field(header, key, dict)
        bad = [name for name, value in values.items() if not _finite(value)]
        if bad:
            self.fail(f"{key!r} holds {values[bad[0]]!r} for {bad[0]!r}, not a finite number")
        if keys is not None and set(values) != set(keys):
            self.fail(f"{key!r} names {sorted(values)}, not the sampled parameters {sorted(keys)}")
        return values

    def diagnostics(self, header: Mapping) -> None:
        diagnostics = self.field(header, "diagnostics", dict)
        for key in ("autocorrelation_time", "effective_sample_size"):
            if key in diagnostics and not (isinstance(diagnostics[key], dict) and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in diagnostics[key].values())):
                self.fail(f"diagnostics {key!r} must map names to numbers")
        for key in ("acceptance_fraction", "burn", "steps", "walkers"):
            if key in diagnostics and not _finite(diagnostics[key]):
                self.fail(f"diagnostics {key!r} must be a finite number")

    def array(self, arrays: Mapping[str, np.ndarray], key: str, kind: str, ndim: int) -> np.ndarray:
        if key not in arrays:
            self.fail(f"it has no array {key!r}")
        array = arrays[key]
        if array.dtype.kind not in (kind if kind == "b" else "fiu") or array.ndim != ndim:
            self.fail(f"array {key!r} is {array.ndim}-D {array.dtype}, not {ndim}-D "
                      f"{'boolean' if kind == 'b' else 'numbers'}")
        return array

    def finite(self, array: np.ndarray, what: str) -> None:
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            where = np.unravel_index(bad[0], array.shape)
            self.fail(f"the {what} hold {float(array[where])} at index {tuple(int(i) for i in where)} "
                      f"({bad.size} non-finite in all)")


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
