"""emcee's ensemble sampler, made cheap per step for a fast vectorised log-density.

An individual fit runs 2,000 steps of 32 walkers, and its log-density costs well under 0.1 ms per
half-ensemble, so emcee's own bookkeeping is about half of the fit.  Two parts of it are replaced,
neither changing a single draw:

- :class:`VectorisedStretchMove` is emcee's :class:`~emcee.moves.StretchMove` (Goodman & Weare,
  Comm. App. Math. Comp. Sci. 5:65, 2010) with its acceptance step done for half the ensemble at once.
  StretchMove decides acceptance walker by walker in Python and passes every vectorised log-density
  result through a per-walker conversion.  This move draws the same random numbers in the same order,
  so it produces the same chain (``tests/test_ensemble.py`` checks it bit for bit).  It needs a
  vectorised log-density (``vectorize=True``) and does not carry blobs.
- :class:`VectorisedDEMove` and :class:`VectorisedDESnookerMove` are emcee's differential-evolution moves
  (what population fits run) with the same change: the acceptance step of emcee's ``RedBlueMove`` for half the
  ensemble at once, the same random numbers in the same order, so the same chain (also checked bit for bit).
- :class:`EnsembleSampler` is emcee's sampler without the snapshot of its random-number state that
  emcee stores on every step (a copy of the whole Mersenne-Twister state, so that a run can be
  resumed from any yielded state; fits never do).  Seeding through ``random_state = ...`` works as in
  emcee; reading it gives None.
"""

from __future__ import annotations

import emcee
import numpy as np
from emcee.moves import StretchMove
from emcee.state import State


class VectorisedStretchMove(StretchMove):
    """Goodman–Weare stretch move (scale ``a``) over two randomly split half-ensembles, vectorised."""

    def propose(self, model, state: State) -> tuple[State, np.ndarray]:
        walkers, k = state.coords.shape
        if walkers < 2 * k and not self.live_dangerously:
            raise RuntimeError(f"the stretch move needs at least twice as many walkers as dimensions ({2 * k})")
        # Like emcee's RedBlueMove, the state is updated in place (the backend keeps copies).
        coords, log_prob = state.coords, state.log_prob
        accepted = np.zeros(walkers, dtype=bool)
        split = np.arange(walkers) % self.nsplits
        if self.randomize_split:
            model.random.shuffle(split)
        parts = [np.flatnonzero(split == part) for part in range(self.nsplits)]  # each in index order
        for part, moving in enumerate(parts):
            others = parts[1 - part] if self.nsplits == 2 else np.concatenate(parts[:part] + parts[part + 1:])
            # The draws of StretchMove.get_proposal, then one uniform per moving walker for acceptance.
            stretch = ((self.a - 1.0) * model.random.rand(moving.size) + 1) ** 2.0 / self.a
            partners = coords[others[model.random.randint(others.size, size=moving.size)]]
            proposal = partners - (partners - coords[moving]) * stretch[:, None]
            new = np.asarray(model.log_prob_fn(proposal), dtype=float)
            if new.shape != (moving.size,):
                raise ValueError(f"the log-density returned shape {new.shape} for {moving.size} walkers")
            if np.isnan(new).any():
                raise ValueError("the log-density returned NaN")
            better = (k - 1.0) * np.log(stretch) + new - log_prob[moving] > np.log(model.random.rand(moving.size))
            chosen = moving[better]
            coords[chosen], log_prob[chosen] = proposal[better], new[better]
            accepted[chosen] = True
        return state, accepted


class _VectorisedAcceptance:
    """emcee's ``RedBlueMove.propose`` with its acceptance step done for each half-ensemble at once (a mixin in front
    of a RedBlueMove subclass: its ``get_proposal`` and ``update`` are used as they are)."""

    def propose(self, model, state: State) -> tuple[State, np.ndarray]:
        walkers, k = state.coords.shape
        if walkers < 2 * k and not self.live_dangerously:
            raise RuntimeError(f"a red-blue move needs at least twice as many walkers as dimensions ({2 * k})")
        self.setup(state.coords)
        accepted = np.zeros(walkers, dtype=bool)
        every = np.arange(walkers)
        split = every % self.nsplits
        if self.randomize_split:
            model.random.shuffle(split)
        for part in range(self.nsplits):
            moving = split == part
            sets = [state.coords[split == j] for j in range(self.nsplits)]
            proposal, factors = self.get_proposal(sets[part], sets[:part] + sets[part + 1:], model.random)
            new = np.asarray(model.log_prob_fn(proposal), dtype=float)
            if new.shape != (moving.sum(),):
                raise ValueError(f"the log-density returned shape {new.shape} for {moving.sum()} walkers")
            if np.isnan(new).any():
                raise ValueError("the log-density returned NaN")
            # emcee draws one uniform per moving walker, in walker order: rand(n) is that sequence
            better = factors + new - state.log_prob[moving] > np.log(model.random.rand(moving.sum()))
            accepted[every[moving][better]] = True
            state = self.update(state, State(proposal, log_prob=new), accepted, moving)
        return state, accepted


class VectorisedDEMove(_VectorisedAcceptance, emcee.moves.DEMove):
    """emcee's differential-evolution move (ter Braak, Stat. Comput. 16:239, 2006), acceptance vectorised."""


class VectorisedDESnookerMove(_VectorisedAcceptance, emcee.moves.DESnookerMove):
    """emcee's DE snooker move (ter Braak & Vrugt, Stat. Comput. 18:435, 2008), acceptance vectorised."""


class EnsembleSampler(emcee.EnsembleSampler):
    """emcee's EnsembleSampler that does not copy its random-number state into every step's State."""

    @property
    def random_state(self):
        return None

    @random_state.setter
    def random_state(self, state) -> None:
        emcee.EnsembleSampler.random_state.fset(self, state)
