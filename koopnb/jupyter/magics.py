"""IPython magics: a thin layer over the library (``%%pkmodel``, ``%pkfit``, ``%pkexpect``, ``%pkdose``,
``%pkdashboard``).

Each magic parses its options with ``magic_arguments`` (so ``%pkfit?`` shows them), looks its
variables up in the user namespace, calls the library and displays the answer.  Every user mistake —
an unknown variable, a regimen, metric or model that does not parse, any :class:`KoopnbError` — is
raised as a ``UsageError``, which IPython shows as one paragraph without a traceback.
"""

from __future__ import annotations

import keyword
import math
import os
import warnings
from argparse import ArgumentTypeError
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd
from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import HTML, display

from koopnb import cards
from koopnb.constraints import Constraints
from koopnb.data import read_nonmem, subjects
from koopnb.distributions import Distribution
from koopnb.errors import KoopnbError, MetricError, ModelError
from koopnb.expectation import expectation, probability
from koopnb.inference import ConvergenceWarning, fit_individual, fit_population
from koopnb.jupyter import DOSE_RANGE
from koopnb.metrics import Target, Window, parse_bounds, parse_metric, parse_window
from koopnb.model import Model, parse_model
from koopnb.optimize import optimize_dose
from koopnb.regimen import Regimen

MODEL_ERROR_MIME_TYPE = "application/vnd.koopnb.model-error+json"


# -- option types (argparse shows their messages as "argument --seed: ...") ------------------------
def _at_least(least: int):
    """An option type: a whole number >= ``least`` (1 for steps, walkers and draws; 0 for seeds)."""
    def whole_number(text: str) -> int:
        try:
            number = int(text)
        except ValueError:
            number = least - 1
        if number < least:
            raise ArgumentTypeError(f"needs a whole number >= {least}, not {text!r}")
        return number

    return whole_number


def _positive(text: str) -> float:
    """A finite number > 0 (a dose step or a limit)."""
    number = _number(text)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ArgumentTypeError(f"needs a positive number, not {text!r}")
    return number


def _share(text: str) -> float:
    """A probability strictly between 0 and 1, written 0.1 or 10%."""
    number = _number(text.rstrip().removesuffix("%"))
    if number is not None and text.rstrip().endswith("%"):
        number /= 100
    if number is None or not 0 < number < 1:
        raise ArgumentTypeError(f"needs a probability between 0 and 1, such as 0.1 or 10%, not {text!r}")
    return number


def _tolerance(text: str) -> float:
    """A tolerance: a finite number >= 0."""
    number = _number(text)
    if number is None or not math.isfinite(number) or number < 0:
        raise ArgumentTypeError(f"needs a finite number >= 0, not {text!r}")
    return number


@magics_class
class KoopnbMagics(Magics):
    """koopnb's notebook commands; load them with ``%load_ext koopnb``."""

    @cell_magic
    @magic_arguments()
    @argument("name", help="variable the parsed model is bound to")
    def pkmodel(self, line: str, cell: str) -> None:
        """Parse the cell as a koopnb model, bind it to NAME and show its equations and parameters.

        Example::

            %%pkmodel theoph
            ka = 1.5 [1/h] ~ 0.6
            ...
        """
        args = _parse(self.pkmodel, line)
        if not args.name.isidentifier() or keyword.iskeyword(args.name):
            raise UsageError(f"%%pkmodel needs a Python variable name, not {args.name!r}")
        try:
            model = parse_model(cell, name=args.name)
        except ModelError as error:
            located, source = self._as_the_editor_numbers(error, cell, args.name)
            if located.line is not None:
                # For the JupyterLab extension, which underlines the place in the cell's editor.
                display(model_error_bundle(located), raw=True)
            raise UsageError(model_error_text(located, source)) from None
        except KoopnbError as error:
            raise UsageError(str(error)) from None
        self.shell.user_ns[args.name] = model
        display(cards.model_bundle(model), raw=True)

    @line_magic
    @magic_arguments()
    @argument("model", help="variable holding the model (from %%pkmodel)")
    @argument("data", help="variable holding the data (NONMEM-style table or (times, values)), or a CSV path")
    @argument("--regimen", default=None, help='the doses of (times, values) data, e.g. "320 mg po q24h x3"')
    @argument("--id", default=None, help="fit this subject of a table alone (individual fit)")
    @argument("--steps", type=_at_least(1), default=2000, help="emcee steps per walker (default 2000)")
    @argument("--walkers", type=_at_least(1), default=None,
              help="emcee walkers (default max(32, 4 per parameter) for one patient, max(16, 2k+2) for a population)")
    @argument("--seed", type=_at_least(0), default=None, help="random seed (an integer >= 0) for reproducible draws")
    @argument("--covariate", action="append", default=[], metavar="NAME=VALUE",
              help="a covariate value of the patient (repeat); overrides the table's")
    @argument("-o", "--output", default="posterior", help="variable the posterior is bound to (default posterior)")
    def pkfit(self, line: str) -> None:
        """Fit MODEL to DATA with emcee: one subject (a table of one subject, or --id) is an individual fit,
        a table of many subjects a population fit; (times, values) data take their doses from --regimen.
        Shows a progress bar and the posterior summary."""
        args = _parse(self.pkfit, line)
        model = self._model(args.model)
        data = self._data(args.data)
        options = {"steps": args.steps, "walkers": args.walkers, "seed": args.seed, "progress": True,
                   "covariates": _covariates(args.covariate)}
        with user_errors(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            regimen = Regimen.parse(args.regimen) if args.regimen is not None else None
            if isinstance(data, pd.DataFrame):
                table = read_nonmem(data)
                ids = subjects(table)
                if args.id is not None:
                    posterior = fit_individual(model, table, regimen, subject=_subject(args.id, ids), **options)
                elif len(ids) == 1:
                    posterior = fit_individual(model, table, regimen, **options)
                elif regimen is not None:
                    raise UsageError(f"the table holds {len(ids)} subjects, each with the doses of its own rows; "
                                     "--regimen goes with (times, values) data or one subject (--id)")
                else:
                    posterior = fit_population(model, table, **options)
            elif args.id is not None:
                raise UsageError("--id picks a subject of a table; the data here is (times, values)")
            elif regimen is None:
                raise UsageError(f"{args.data} holds (times, values) without doses: give them with --regimen, "
                                 'e.g. --regimen "320 mg po"')
            else:
                posterior = fit_individual(model, data, regimen, **options)
        self.shell.user_ns[args.output] = posterior
        display(cards.posterior_summary_bundle(posterior), raw=True)
        for warning in caught:
            if issubclass(warning.category, ConvergenceWarning):
                print(f"Note: {warning.message}")

    @line_magic
    @magic_arguments()
    @argument("model", help="variable holding the model")
    @argument("--dist", default="prior", help="variable holding a distribution or posterior, or 'prior' "
                                              "(the model's population distribution; the default)")
    @argument("--regimen", required=True, help='dosing regimen, e.g. "320 mg po q24h x3"')
    @argument("--metric", required=True, help='exposure metric, e.g. "auc(0, 24)"')
    @argument("--window", default=None, help="target window LOW..HIGH (..HIGH, LOW..): gives the probability")
    @argument("--method", default="koopman", choices=("koopman", "montecarlo", "qmc"), help="integration method")
    @argument("--n", type=_at_least(1), default=10_000, help="Monte Carlo draws (--method montecarlo)")
    @argument("--seed", type=_at_least(0), default=None, help="random seed, an integer >= 0 (Monte Carlo and QMC)")
    @argument("--rtol", type=_tolerance, default=1e-4, help="relative tolerance (default 1e-4)")
    @argument("--atol", type=_tolerance, default=None, help="absolute tolerance (default the library's)")
    @argument("--covariate", action="append", default=[], metavar="NAME=VALUE", help="a covariate value (repeat)")
    @argument("-o", "--output", default=None, help="variable the ExpectationResult is bound to")
    def pkexpect(self, line: str) -> None:
        """The expected METRIC, or with --window the probability of landing in it, over the uncertainty in
        --dist, with its error estimate and the number of model evaluations."""
        args = _parse(self.pkexpect, line)
        model = self._model(args.model)
        dist = self._distribution(args.dist, model)
        tolerances = {"rtol": args.rtol} | ({"atol": args.atol} if args.atol is not None else {})
        with user_errors():
            regimen = Regimen.parse(args.regimen)
            metric = parse_metric(args.metric)
            options = {"method": args.method, "n": args.n, "seed": args.seed, "covariates": _covariates(args.covariate),
                       **tolerances}
            if args.window is None:
                result = expectation(metric, model, regimen, dist, **options)
            else:
                result = probability(Window(metric, *parse_bounds(args.window)), model, regimen, dist, **options)
        if args.output:
            self.shell.user_ns[args.output] = result
        display(cards.expectation_bundle(result), raw=True)

    @line_magic
    @magic_arguments()
    @argument("model", help="variable holding the model")
    @argument("--dist", default="prior", help="variable holding a distribution or posterior, or 'prior'")
    @argument("--regimen", required=True, help='regimen whose doses are scaled, e.g. "320 mg po q24h x3"')
    @argument("--window", default=None, help='maximise P(window), e.g. "auc(0, 24) in 400..600"')
    @argument("--target", default=None, help='hit an expected value instead, e.g. "auc(0, 24) = 500"')
    @argument("--bounds", default=None, help="dose range LOW..HIGH (default a quarter to 4 times the dose)")
    @argument("--step", type=_positive, default=None,
              help="only multiples of this dose (tablet or vial size; default 1, 2, 2.5 or 5 x 10^k near 5 %% of "
                   "the current dose)")
    @argument("--method", default="koopman", choices=("koopman", "montecarlo"), help="search objective")
    @argument("--max-dose", type=_positive, default=None, help="largest single dose allowed")
    @argument("--max-daily", type=_positive, default=None, help="most allowed within any 24 h")
    @argument("--max-rate", type=_positive, default=None,
              help="fastest infusion allowed (amount per hour; caps the dose at the regimen's durations)")
    @argument("--toxic", default=None, help='a harmful window whose probability is limited, e.g. "cmin(0, 24) in 20.."')
    @argument("--toxic-limit", type=_share, default=None,
              help="largest probability of --toxic allowed, 0.1 or 10%% (default 10%%)")
    @argument("--covariate", action="append", default=[], metavar="NAME=VALUE", help="a covariate value (repeat)")
    @argument("-o", "--output", default=None, help="variable the DoseResult is bound to")
    def pkdose(self, line: str) -> None:
        """The practical dose (every dose of --regimen scaled alike, a multiple of --step) that maximises the
        probability of --window, or whose expected metric is closest to --target, within the clinical limits;
        shown beside the current --regimen, both certified with their error estimates."""
        args = _parse(self.pkdose, line)
        if (args.window is None) == (args.target is None):
            raise UsageError("%pkdose needs exactly one of --window and --target")
        if args.toxic_limit is not None and args.toxic is None:
            raise UsageError("--toxic-limit limits the probability of --toxic; give the harmful window with --toxic")
        model = self._model(args.model)
        dist = self._distribution(args.dist, model)
        with user_errors():
            regimen = Regimen.parse(args.regimen)
            target = parse_window(args.window) if args.window is not None else parse_target(args.target)
            first = regimen.doses[0].amount if regimen.doses else 0.0
            bounds = (parse_bounds(args.bounds) if args.bounds is not None
                      else (first / DOSE_RANGE, first * DOSE_RANGE))
            if None in bounds:
                raise UsageError(f"--bounds needs both ends, LOW..HIGH, not {args.bounds!r}")
            toxic = {"toxic": parse_window(args.toxic)} if args.toxic is not None else {}
            if args.toxic_limit is not None:
                toxic["toxic_limit"] = args.toxic_limit
            limits = Constraints(max_rate=args.max_rate, max_dose=args.max_dose, max_daily=args.max_daily, **toxic)
            result = optimize_dose(model, regimen, dist, target, bounds, step=args.step, method=args.method,
                                   constraints=limits, covariates=_covariates(args.covariate))
        if args.output:
            self.shell.user_ns[args.output] = result
        display(cards.dose_bundle(result), raw=True)

    @line_magic
    @magic_arguments()
    @argument("posterior", help="variable holding the patient's posterior (from %%pkfit or kn.fit_individual)")
    @argument("--regimen", required=True, help='the current regimen, e.g. "320 mg po q24h x3"')
    @argument("--window", required=True, help='the target, e.g. "auc(0, 24) in 400..600"')
    @argument("--bounds", default=None, help="search the dose in LOW..HIGH (default a quarter to 4 times the dose)")
    @argument("--step", type=float, default=None, help="only multiples of this dose (tablet or vial size)")
    @argument("--citation", default="", help="the model's source, printed on the report")
    @argument("--unit", default="", help='concentration unit for the plot and levels, e.g. "mg/L"')
    @argument("--save", default=None, metavar="PATH", help="also write the report to PATH (.pdf or .html)")
    @argument("-o", "--output", default=None, help="variable the report is bound to")
    def pkreport(self, line: str) -> None:
        """The one-page dosing report for --regimen and the recommended dose within --bounds: shown here, and
        written to --save as PDF or HTML."""
        from koopnb.reporting import report

        args = _parse(self.pkreport, line)
        posterior = self._variable(args.posterior, "a patient's posterior")
        if not hasattr(posterior, "subject") or not hasattr(posterior, "to_distribution"):
            raise UsageError(f"{args.posterior!r} is a {type(posterior).__name__}, not a patient's posterior")
        with user_errors():
            regimen = Regimen.parse(args.regimen)
            window = parse_window(args.window)
            first = regimen.doses[0].amount if regimen.doses else 0.0
            bounds = (parse_bounds(args.bounds) if args.bounds is not None
                      else (first / DOSE_RANGE, first * DOSE_RANGE))
            if None in bounds:
                raise UsageError(f"--bounds needs both ends, LOW..HIGH, not {args.bounds!r}")
            page = report(posterior, regimen, window, bounds=bounds, step=args.step, citation=args.citation,
                          concentration_unit=args.unit)
            if args.save:
                page.save(args.save)
        if args.output:
            self.shell.user_ns[args.output] = page
        display(HTML(page.html))

    @line_magic
    @magic_arguments()
    @argument("model", help="variable holding the model")
    @argument("--dist", default="prior", help="variable holding a distribution or posterior, or 'prior'")
    @argument("--regimen", required=True, help='starting regimen, e.g. "320 mg po q24h x3"')
    @argument("--metric", required=True, help='exposure metric, e.g. "auc(0, 24)"')
    @argument("--window", default=None, help="starting window LOW..HIGH")
    @argument("--step", type=float, default=None, help="dose step (tablet or vial size) of the slider and optimum")
    @argument("--covariate", action="append", default=[], metavar="NAME=VALUE", help="a covariate value (repeat)")
    def pkdashboard(self, line: str) -> None:
        """An interactive panel: window, dose, interval and metric controls, the live probability and
        expectation, concentration bands and an "Optimise dose" button."""
        from koopnb.jupyter.widgets import dashboard

        args = _parse(self.pkdashboard, line)
        model = self._model(args.model)
        dist = self._distribution(args.dist, model)
        with user_errors():
            panel = dashboard(model, dist, args.regimen, args.metric,
                              window=parse_bounds(args.window) if args.window is not None else None,
                              covariates=_covariates(args.covariate), step=args.step)
        display(panel)

    def remember_cell(self, info) -> None:
        """IPython's ``pre_run_cell`` event: keep the cell as typed (IPython drops blank lines above a cell
        magic before calling it, but the editor numbers them)."""
        self._typed_cell = getattr(info, "raw_cell", None)

    def _as_the_editor_numbers(self, error: ModelError, body: str, name: str) -> tuple[ModelError, str]:
        """The model error located as the editor numbers lines, and the source it was located in: the body is
        parsed again below blank lines standing for the magic line (and blank lines above it, which IPython
        drops), so that every line number the parser writes — where the error is, and any "defined on line N"
        in its message — is the editor's."""
        typed = getattr(self, "_typed_cell", None) or ""
        above, magic, _ = typed.partition("%%pkmodel")
        source = "\n" * (above.count("\n") + 1 if magic and not above.strip() else 1) + body
        try:
            parse_model(source, name=name)
        except ModelError as located:
            error = located
        return error, source

    # -- the user namespace ---------------------------------------------------------------------------
    def _variable(self, name: str, what: str):
        if name not in self.shell.user_ns:
            raise UsageError(f"there is no variable {name!r} (expected {what})")
        return self.shell.user_ns[name]

    def _model(self, name: str) -> Model:
        model = self._variable(name, "a model from %%pkmodel")
        if not isinstance(model, Model):
            raise UsageError(f"{name!r} is a {type(model).__name__}, not a model; define one with %%pkmodel {name}")
        return model

    def _distribution(self, name: str, model: Model) -> Distribution:
        """A user variable (a distribution, or a posterior turned into one), else the word ``prior``."""
        if name == "prior" and not isinstance(self.shell.user_ns.get(name), Distribution):
            with user_errors():
                return model.prior()
        value = self._variable(name, "a distribution, a posterior or the word prior")
        if isinstance(value, Distribution):
            return value
        if hasattr(value, "to_distribution"):
            with user_errors():
                return value.to_distribution()
        raise UsageError(f"{name!r} is a {type(value).__name__}, not a distribution or posterior")

    def _data(self, name: str):
        if name in self.shell.user_ns:
            return self.shell.user_ns[name]
        if os.path.exists(name):
            with user_errors():
                return read_nonmem(name)
        raise UsageError(f"there is no variable or file {name!r} (expected a data table)")


# -- helpers ----------------------------------------------------------------------------------------
def _parse(magic, line: str):
    """The magic's options, with the quotes around values such as "320 mg po q24h x3" removed
    (IPython splits option strings without removing quotes); ``-o`` must name a Python variable."""
    args = parse_argstring(magic, line)
    for name, value in vars(args).items():
        if isinstance(value, str):
            setattr(args, name, _unquote(value))
        elif isinstance(value, list):
            setattr(args, name, [_unquote(v) if isinstance(v, str) else v for v in value])
    output = getattr(args, "output", None)
    if output is not None and (not output.isidentifier() or keyword.iskeyword(output)):
        raise UsageError(f"-o needs a Python variable name, not {output!r}")
    return args


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn koopnb's errors (bad input, failed computations) into one-paragraph UsageErrors."""
    try:
        yield
    except KoopnbError as error:
        raise UsageError(str(error)) from None
    except MemoryError:
        raise UsageError("this needs more memory than the machine has: ask for fewer steps, walkers or draws") from None
    except OSError as error:
        if error.filename is None:
            raise UsageError(str(error)) from None
        raise UsageError(f"cannot read {error.filename!r}: {error.strerror}") from None


def model_error_bundle(error: ModelError) -> dict[str, object]:
    """A display bundle locating a model error for the JupyterLab extension (``extension/src/errors``):
    ``{line, column, message}`` with 1-based line and column of the cell as the editor shows it. The empty
    text/plain keeps other front ends quiet; they show the UsageError text alone."""
    payload = {"line": error.line, "column": error.column or 1, "message": error.message}
    return {MODEL_ERROR_MIME_TYPE: payload, "text/plain": ""}


def model_error_text(error: ModelError, source: str) -> str:
    """``line L, column C: message`` followed by the offending line of ``source`` and a caret under C."""
    lines = source.splitlines()
    if error.line is None or not 1 <= error.line <= len(lines):
        return str(error)
    text = lines[error.line - 1]
    column = max(int(error.column or 1), 1)
    # Keep tabs in the caret's indentation so it lines up under the same character.
    indent = "".join(ch if ch == "\t" else " " for ch in text[: column - 1])
    return f"{error}\n    {text}\n    {indent}^"


def parse_target(text: str) -> Target:
    """A Target from ``METRIC = VALUE``, e.g. ``auc(0, 24) = 500``."""
    metric, equals, value = (text or "").rpartition("=")
    if not equals:
        raise MetricError(f"target {text!r} is not of the form 'METRIC = VALUE', e.g. auc(0, 24) = 500")
    try:
        number = float(value)
    except ValueError:
        raise MetricError(f"target {text!r}: {value.strip()!r} is not a number") from None
    return Target(parse_metric(metric), number)


def _covariates(pairs: list[str]) -> dict[str, float] | None:
    """``["WT=70", "AGE=40"]`` -> ``{"WT": 70.0, "AGE": 40.0}``; None when there are none."""
    values = {}
    for pair in pairs:
        name, equals, value = pair.partition("=")
        number = _number(value)
        if not equals or not name.strip() or number is None:
            raise UsageError(f"--covariate needs NAME=VALUE with a number, not {pair!r}")
        if name.strip() in values:
            raise UsageError(f"--covariate {name.strip()} is given twice ({values[name.strip()]:g} and {number:g}); "
                             "give each covariate once")
        values[name.strip()] = number
    return values or None


def _subject(text: str, ids: list) -> object:
    """The subject ID of the table that reads as ``text`` (IDs may be numbers or strings)."""
    for subject in ids:
        if str(subject) == text or (isinstance(subject, (int, float)) and _number(text) == subject):
            return subject
    shown = ", ".join(str(i) for i in ids[:10]) + (", ..." if len(ids) > 10 else "")
    raise UsageError(f"there is no subject {text!r} in the data; the IDs are {shown}")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
