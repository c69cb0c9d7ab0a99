"""emcee's stretch move with its acceptance step done for half the ensemble at once.

emcee's :class:`~emcee.moves.StretchMove` (Goodman & Weare, Comm. App. Math. Comp. Sci. 5:65, 2010)
decides acceptance walker by walker in Python and passes every vectorised log-density result
through a per-walker conversion; for a cheap log-density that bookkeeping costs more than the
density itself (about half the time of a 32-walker run in ``benchmarks/posterior.py``).  This move
is the same algorithm, drawing the same random numbers in the same order, so for the same random
state it produces the same chain as ``StretchMove`` (``tests/test_stretch.py`` checks this
bit for bit); it only does the arithmetic on arrays.  It needs a vectorised log-density
(``EnsembleSampler(..., vectorize=True)``) and does not carry blobs.
"""

from __future__ import annotations

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
