"""Dosing regimens: :class:`Dose`, :class:`Regimen`, and the regimen mini-language.

A regimen is a time-sorted, immutable tuple of doses.  The mini-language of ``Regimen.parse`` is

    AMOUNT [UNIT] [po | iv | into STATE] [over DURATION h] [q INTERVAL h] [x COUNT] [at START h] [ss | ss2]
    reset at TIME h

with several dose series (and resets) joined by ``;``, e.g. ``"320 mg po"``, ``"1000 mg iv over 1 h q12h x6"``,
``"500 mg po q8h x9 at 2 h"``, ``"1000 mg iv over 1 h q12h ss"``.  The clauses after the amount may come
in any order.  ``ss`` makes the first dose of the series a steady-state dose (NONMEM SS=1: the patient
has been on this dose every INTERVAL hours for long enough, the system is reset and put at that steady
state, the dose itself being the last of the series); ``ss2`` is NONMEM SS=2 (the steady state is added
to the current state).  ``reset at T h`` returns the state to its initial condition at T (NONMEM EVID 3).
The amount's unit word (mg, g, mcg, mmol, units, mg/kg...) is stored on the regimen but never converted;
times are hours (``h``, ``hr``, ``hours``) because koopnb never converts units.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from numbers import Integral

import numpy as np

from koopnb.errors import RegimenError

IV_STATE = "central"
"""The state an ``iv`` dose goes into (MODEL_LANGUAGE.md: "iv means the state named central")."""

MAX_DOSES = 100_000
"""Most doses one regimen may hold (e.g. q1h for eleven years); beyond it a regimen is refused, not built."""

_SIGNIFICANT_DIGITS = 12
"""Digits kept when a regimen is written as text; enough for any clinical amount or time."""


@dataclass(frozen=True)
class Dose:
    """One dose: ``amount`` (the user's unit) given at ``time`` (h) into ``cmt``.

    A bolus when ``duration`` is 0, otherwise a zero-order infusion of rate ``amount / duration``
    (amount per hour) starting at ``time``; ``duration=None`` is an infusion whose duration the model
    gives (its ``dose STATE duration=EXPR``, NONMEM RATE=-2).  ``cmt=None`` means the model's default
    dosing compartment (its ``dose`` statement); otherwise a state name, or a string of digits ``"k"``
    for the model's k-th state (1-based, NONMEM's CMT numbering).

    ``steady_state`` (stored as an int) is 0 for a plain dose; 1 (or True) for NONMEM SS=1: the system
    is reset and put at the steady state of this dose repeated every ``interval`` hours, the dose itself
    being the last of that series; 2 for NONMEM SS=2: that steady state is added to the current state.
    ``interval`` (h, > 0) is required for a steady-state dose and refused otherwise.
    """

    amount: float
    time: float = 0.0
    cmt: str | None = None
    duration: float | None = 0.0
    steady_state: int = 0
    interval: float | None = None

    def __post_init__(self) -> None:
        for name in ("amount", "time"):
            object.__setattr__(self, name, _non_negative(getattr(self, name), name))
        if self.duration is not None:
            object.__setattr__(self, "duration", _non_negative(self.duration, "duration"))
        if self.cmt is not None and (not isinstance(self.cmt, str) or not self.cmt.strip()):
            raise RegimenError(f"dose compartment must be a state name or None, not {self.cmt!r}")
        steady = self.steady_state
        if isinstance(steady, (bool, np.bool_)):
            steady = int(steady)
        if not isinstance(steady, (Integral, np.integer)) or int(steady) not in (0, 1, 2):
            raise RegimenError(f"dose steady_state must be 0 (none), 1 (SS=1) or 2 (SS=2), not {steady!r}")
        object.__setattr__(self, "steady_state", int(steady))
        if self.steady_state:
            if self.interval is None:
                raise RegimenError("a steady-state dose needs its dosing interval (interval=HOURS, NONMEM II)")
            interval = _non_negative(self.interval, "interval")
            if interval == 0:
                raise RegimenError("the dosing interval of a steady-state dose must be > 0 h")
            object.__setattr__(self, "interval", interval)
            if self.duration is not None and self.duration > interval:
                raise RegimenError(f"a steady-state infusion of {self.duration:g} h repeated every {interval:g} h "
                                   "would overlap itself; koopnb needs the duration <= the interval")
        elif self.interval is not None:
            raise RegimenError("a dose interval is only used by a steady-state dose (steady_state=1 or 2); "
                               "repeated doses are separate doses (Regimen.repeat)")

    @property
    def rate(self) -> float:
        """Infusion rate (amount per hour); ``inf`` for a bolus, ``nan`` when the model gives the duration."""
        if self.duration is None:
            return math.nan
        return self.amount / self.duration if self.duration > 0 else math.inf


def _non_negative(value: object, name: str) -> float:
    """``value`` as a finite float >= 0, or a RegimenError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise RegimenError(f"dose {name} must be a number, not {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise RegimenError(f"dose {name} must be a finite number >= 0, not {number!r}")
    return number


class Regimen:
    """An immutable, time-sorted sequence of :class:`Dose`.

    Doses given at the same time are kept in one canonical order (by duration, compartment and amount),
    so a regimen does not depend on the order its doses were listed in and round-trips through text.

    ``unit`` is the amount unit word (e.g. ``"mg"``), stored for display and never converted;
    ``None`` when unknown.  ``resets`` are times (h) at which the state returns to its initial
    condition (NONMEM EVID 3), before any dose given at that same time (EVID 4 = reset and dose);
    an infusion still running at a reset is stopped.  Two regimens are equal when their doses, units
    and resets are equal.  A regimen holds at most :data:`MAX_DOSES` doses.
    """

    __slots__ = ("_doses", "_resets", "_unit")

    def __init__(self, doses: Iterable[Dose] = (), unit: str | None = None, resets: Iterable[float] = ()):
        doses = _capped(doses)
        for dose in doses:
            if not isinstance(dose, Dose):
                raise RegimenError(f"a regimen holds Dose objects, not {dose!r}")
        if unit is not None and (not isinstance(unit, str) or not unit.strip()):
            raise RegimenError(f"regimen unit must be a word such as 'mg' or None, not {unit!r}")
        if isinstance(resets, (str, bytes)) or not isinstance(resets, Iterable):
            raise RegimenError(f"regimen resets must be a sequence of times in hours, not {resets!r}")
        self._doses = tuple(sorted(doses, key=_canonical))
        self._unit = unit
        self._resets = tuple(sorted({_non_negative(t, "reset time") for t in resets}))

    @classmethod
    def repeat(
        cls,
        amount: float,
        every: float,
        count: int,
        start: float = 0.0,
        cmt: str | None = None,
        duration: float = 0.0,
        unit: str | None = None,
    ) -> Regimen:
        """``count`` equal doses of ``amount``, ``every`` hours apart, the first at ``start`` (h)."""
        if isinstance(count, bool) or not isinstance(count, Integral) or count < 1:
            raise RegimenError(f"the number of doses must be a whole number >= 1, not {count!r}")
        if count > MAX_DOSES:
            raise RegimenError(f"{count} doses is more than the {MAX_DOSES:,} one regimen may hold")
        every = _non_negative(every, "interval")
        if every == 0 and count > 1:
            raise RegimenError("the interval between repeated doses must be > 0 h")
        start = _non_negative(start, "start time")
        times = start + every * np.arange(int(count))
        return cls((Dose(amount, float(t), cmt, duration) for t in times), unit)

    @classmethod
    def parse(cls, text: str) -> Regimen:
        """A regimen from the mini-language, e.g. ``"320 mg po q24h x3"`` (see the module docstring)."""
        return _RegimenParser(text).regimen()

    @property
    def doses(self) -> tuple[Dose, ...]:
        """The doses, sorted by time."""
        return self._doses

    @property
    def resets(self) -> tuple[float, ...]:
        """Sorted times (h) at which the state returns to its initial condition."""
        return self._resets

    @property
    def unit(self) -> str | None:
        """The amount unit word, never converted (``None`` when not given)."""
        return self._unit

    @property
    def amounts(self) -> np.ndarray:
        """Dose amounts, shape ``(n_doses,)``, in :attr:`unit`."""
        return np.array([dose.amount for dose in self._doses], dtype=float)

    @property
    def times(self) -> np.ndarray:
        """Dose start times (h), shape ``(n_doses,)``, ascending."""
        return np.array([dose.time for dose in self._doses], dtype=float)

    @property
    def end(self) -> float:
        """When the last dose is complete (h): the latest ``time + duration`` (a modelled duration counts
        as 0 here); 0 without doses."""
        return max((dose.time + (dose.duration or 0.0) for dose in self._doses), default=0.0)

    def scaled(self, factor: float) -> Regimen:
        """The same regimen with every amount multiplied by ``factor`` (>= 0); durations, steady state
        and resets unchanged."""
        factor = _non_negative(factor, "scale factor")
        return Regimen((replace(d, amount=d.amount * factor) for d in self._doses), self._unit, self._resets)

    def shifted(self, dt: float) -> Regimen:
        """The same regimen ``dt`` hours later (``dt`` may be negative if no dose or reset moves before 0)."""
        if isinstance(dt, bool) or not isinstance(dt, (int, float, np.integer, np.floating)):
            raise RegimenError(f"a time shift must be a number of hours, not {dt!r}")
        return Regimen((replace(d, time=d.time + float(dt)) for d in self._doses), self._unit,
                       (t + float(dt) for t in self._resets))

    def __add__(self, other: Regimen | Dose) -> Regimen:
        """Both regimens' doses together, e.g. a loading dose plus maintenance."""
        if isinstance(other, Dose):
            other = Regimen([other])
        if not isinstance(other, Regimen):
            return NotImplemented
        if self._unit is not None and other._unit is not None and self._unit != other._unit:
            raise RegimenError(
                f"cannot combine doses in {self._unit!r} with doses in {other._unit!r}; "
                "koopnb never converts units"
            )
        return Regimen(self._doses + other._doses, self._unit or other._unit, self._resets + other._resets)

    def __len__(self) -> int:
        return len(self._doses)

    def __iter__(self) -> Iterator[Dose]:
        return iter(self._doses)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Regimen):
            return NotImplemented
        return self._doses == other._doses and self._unit == other._unit and self._resets == other._resets

    def __hash__(self) -> int:
        return hash((self._doses, self._unit, self._resets))

    def __str__(self) -> str:
        """The regimen in the mini-language; ``Regimen.parse(str(r)) == r`` for amounts and times
        with at most 12 significant digits."""
        parts = [(series[0].time, _describe(series, self._unit)) for series in _series(self._doses)]
        parts += [(t, f"reset at {_number(t)} h") for t in self._resets]
        # A reset is written before the doses at its time, where it acts (sorted is stable).
        parts.sort(key=lambda part: (part[0], not part[1].startswith("reset")))
        return "; ".join(text for _, text in parts)

    def __repr__(self) -> str:
        if not self._doses and not self._resets:
            return "Regimen([])" if self._unit is None else f"Regimen([], unit={self._unit!r})"
        if not self._doses:
            return f"Regimen([], unit={self._unit!r}, resets={self._resets!r})"
        return f"Regimen.parse({str(self)!r})"


def _capped(doses: Iterable[Dose]) -> tuple[Dose, ...]:
    """The doses as a tuple, refused (before they are all built) beyond MAX_DOSES."""
    if hasattr(doses, "__len__") and len(doses) > MAX_DOSES:
        raise RegimenError(f"{len(doses):,} doses is more than the {MAX_DOSES:,} one regimen may hold")
    doses = tuple(itertools.islice(doses, MAX_DOSES + 1))
    if len(doses) > MAX_DOSES:
        raise RegimenError(f"a regimen may hold at most {MAX_DOSES:,} doses")
    return doses


def _canonical(dose: Dose) -> tuple:
    duration = -1.0 if dose.duration is None else dose.duration
    return (dose.time, dose.steady_state, duration, "" if dose.cmt is None else str(dose.cmt), dose.amount)


# --- writing a regimen as text ------------------------------------------------------------------


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def _number(value: float) -> str:
    return f"{value:.{_SIGNIFICANT_DIGITS}g}"


def _series(doses: tuple[Dose, ...]) -> list[tuple[Dose, float, int]]:
    """Split time-sorted doses into evenly spaced series ``(first dose, interval, count)``.

    Doses with the same amount, compartment and duration are grouped; each group is cut greedily
    into maximal runs with a constant interval.  A steady-state dose can only start a run, whose
    interval is then its own; the rest of a run are plain doses.  Series are returned in order of
    their first dose.
    """
    groups: dict[tuple[float, str | None, float | None], list[Dose]] = {}
    for dose in doses:
        groups.setdefault((dose.amount, dose.cmt, dose.duration), []).append(dose)
    series = []
    for group in groups.values():
        i = 0
        while i < len(group):
            first = group[i]
            if first.steady_state:
                interval = _round(first.interval)
            else:
                interval = _round(group[i + 1].time - first.time) if i + 1 < len(group) else 0.0
            count = 1
            if interval > 0:
                while (i + count < len(group) and not group[i + count].steady_state
                       and _round(group[i + count].time) == _round(first.time + interval * count)):
                    count += 1
            series.append((first, interval, count))
            i += count
    return sorted(series, key=lambda s: s[0].time)


def _describe(series: tuple[Dose, float, int], unit: str | None) -> str:
    dose, interval, count = series
    words = [_number(dose.amount)]
    if unit is not None:
        words.append(unit)
    if dose.cmt is None:
        words.append("po")
    elif dose.cmt == IV_STATE:
        words.append("iv")
    else:
        words += ["into", dose.cmt]
    if dose.duration is None:
        words += ["over", "model"]
    elif dose.duration > 0:
        words += ["over", _number(dose.duration), "h"]
    if count > 1 or dose.steady_state:
        words.append(f"q{_number(interval)}h")
    if count > 1:
        words.append(f"x{count}")
    if dose.time > 0:
        words += ["at", _number(dose.time), "h"]
    if dose.steady_state:
        words.append("ss" if dose.steady_state == 1 else "ss2")
    return " ".join(words)


# --- reading a regimen from text ------------------------------------------------------------------

# A word starts with a letter and may hold the characters of unit words such as mg/kg, mg/m2, 10^6/L.
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<word>[^\W\d_][\w/%.^*·-]*)|(?P<semi>;))"
)
_GLUED = re.compile(r"(?P<key>[qx])(?P<number>(?:\d+\.?\d*|\.\d+))(?P<rest>\w*)$", re.IGNORECASE)
_HOURS = {"h", "hr", "hrs", "hour", "hours"}
_ROUTES = {"po", "iv", "into"}
_STEADY = {"ss": 1, "ss1": 1, "ss2": 2}
_CLAUSES = _ROUTES | {"over", "q", "x", "at"} | set(_STEADY)


@dataclass(frozen=True)
class _Token:
    kind: str  # "number", "word", "semi" or "end"
    text: str
    position: int  # 1-based character position in the regimen text


class _RegimenParser:
    """Recursive-descent reader of the regimen mini-language; every mistake names its character."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise RegimenError(f"a regimen must be text such as '320 mg po q24h x3', not {text!r}")
        self.text = text
        self.tokens = self._tokenize()
        self.index = 0
        self.unit: str | None = None

    def error(self, position: int, message: str) -> RegimenError:
        return RegimenError(f"regimen {self.text!r} at character {position}: {message}")

    def _tokenize(self) -> list[_Token]:
        tokens = []
        position = 0
        text = self.text.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                bad = len(text) - len(text[position:].lstrip()) + 1
                raise self.error(bad, f"unexpected character {text[bad - 1]!r}")
            kind = match.lastgroup
            start = match.start(kind) + 1
            word = match.group(kind)
            glued = _GLUED.match(word) if kind == "word" else None
            if glued:  # q12h, x6, q12: the keyword, its number, then an optional time unit
                tokens.append(_Token("word", glued["key"], start))
                tokens.append(_Token("number", glued["number"], start + 1))
                if glued["rest"]:
                    tokens.append(_Token("word", glued["rest"], start + 1 + len(glued["number"])))
            else:
                tokens.append(_Token(kind, word, start))
            position = match.end()
        tokens.append(_Token("end", "", len(text) + 1))
        return tokens

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.token
        self.index += 1
        return token

    def regimen(self) -> Regimen:
        if self.token.kind == "end":
            raise self.error(1, "the regimen is empty (e.g. '320 mg po q24h x3')")
        regimen = Regimen()
        while self.token.kind != "end":
            regimen = regimen + (self.reset() if self.token.text.lower() == "reset" else self.series())
            if self.token.kind == "semi":
                self.advance()
            elif self.token.kind != "end":
                raise self.error(self.token.position, f"{self.token.text!r} is not understood here")
        return Regimen(regimen.doses, self.unit, regimen.resets)

    def reset(self) -> Regimen:
        """``reset at TIME h``: the state returns to its initial condition at TIME."""
        keyword = self.advance()
        if self.token.kind != "word" or self.token.text.lower() != "at":
            raise self.error(keyword.position, "'reset' needs its time (e.g. reset at 48 h)")
        return Regimen(resets=[self.hours(self.advance(), "a time (e.g. reset at 48 h)")])

    def series(self) -> Regimen:
        """One ``AMOUNT [UNIT] clauses...`` up to ``;`` or the end."""
        first = self.token
        if first.kind != "number":
            what = "nothing" if first.kind in ("semi", "end") else repr(first.text)
            raise self.error(first.position, f"a dose starts with its amount (e.g. 320 mg), not {what}")
        amount = float(self.advance().text)
        if self.token.kind == "word" and self.token.text.lower() not in _CLAUSES:
            unit = self.advance()
            if self.unit is not None and unit.text != self.unit:
                raise self.error(
                    unit.position,
                    f"unit {unit.text!r} differs from {self.unit!r}; one regimen uses one amount unit",
                )
            self.unit = unit.text
        seen: dict[str, _Token] = {}
        cmt: str | None = None
        duration: float | None = 0.0
        interval, count, start, steady = None, None, 0.0, 0
        while self.token.kind == "word":
            keyword = self.advance()
            name = keyword.text.lower()
            if name not in _CLAUSES:
                raise self.error(
                    keyword.position,
                    f"{keyword.text!r} is not understood (expected po, iv, into, over, q, x, at or ss)",
                )
            clause = "route" if name in _ROUTES else "ss" if name in _STEADY else name
            if clause in seen:
                first_seen = seen[clause]
                raise self.error(
                    keyword.position,
                    f"{keyword.text!r} repeats {first_seen.text!r} given at character {first_seen.position}",
                )
            seen[clause] = keyword
            if name == "iv":
                cmt = IV_STATE
            elif name == "into":
                cmt = self.state(keyword)
            elif name == "over":
                if self.token.kind == "word" and self.token.text.lower() == "model":
                    self.advance()  # the model gives the duration (its dose STATE duration=EXPR)
                    duration = None
                else:
                    duration = self.hours(keyword, "a duration (e.g. over 1 h)")
            elif name == "q":
                interval = self.hours(keyword, "an interval in hours (e.g. q12h)")
                if interval == 0:
                    raise self.error(keyword.position, "'q' needs an interval > 0 h")
            elif name == "x":
                count = self.count(keyword)
            elif name == "at":
                start = self.hours(keyword, "a start time (e.g. at 2 h)")
            elif name in _STEADY:
                steady = _STEADY[name]
        if steady:
            if interval is None:
                raise self.error(seen["ss"].position, f"{seen['ss'].text!r} needs the dosing interval (e.g. q12h ss)")
            count = count or 1
        if interval is not None and count is None:
            raise self.error(seen["q"].position, "'q' repeats doses; say how many doses with x N (e.g. x3)")
        if interval is None and count not in (None, 1):
            raise self.error(seen["x"].position, f"'x{count}' needs an interval between doses (e.g. q12h)")
        try:
            regimen = Regimen.repeat(amount, interval or 1.0, count or 1, start, cmt, duration)
            if steady:  # the first dose of the series is the steady-state one (NONMEM SS with ADDL)
                first_dose = replace(regimen.doses[0], steady_state=steady, interval=interval)
                regimen = Regimen((first_dose, *regimen.doses[1:]))
            return regimen
        except RegimenError as error:
            raise self.error(first.position, str(error)) from None

    def number(self, keyword: _Token, needs: str) -> _Token:
        if self.token.kind != "number":
            position = keyword.position + len(keyword.text)
            raise self.error(position, f"{keyword.text!r} needs {needs}")
        return self.advance()

    def hours(self, keyword: _Token, needs: str) -> float:
        value = float(self.number(keyword, needs).text)
        unit = self.token
        if unit.kind == "word" and unit.text.lower() not in _CLAUSES:
            if unit.text.lower() not in _HOURS:
                raise self.error(
                    unit.position, f"times are in hours ('h'), not {unit.text!r}; koopnb never converts units"
                )
            self.advance()
        return value

    def count(self, keyword: _Token) -> int:
        token = self.number(keyword, "a number of doses (e.g. x3)")
        value = float(token.text)
        if value != int(value) or value < 1:
            raise self.error(
                token.position, f"the number of doses must be a whole number >= 1, not {token.text}"
            )
        return int(value)

    def state(self, keyword: _Token) -> str:
        token = self.token
        if token.kind == "number" and re.fullmatch(r"\d+", token.text) and int(token.text) >= 1:
            return self.advance().text
        if token.kind != "word" or token.text.lower() in _CLAUSES or not token.text.isidentifier():
            raise self.error(
                keyword.position + len(keyword.text), "'into' needs a state name (e.g. into depot)"
            )
        return self.advance().text
