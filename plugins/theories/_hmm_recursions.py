"""The HMM recursions of markov_regime: its causal forward filter, and its batch path (`MarkovRegime.analyze_batch`),
`analyze` at many bars, equal to it bar by bar.

Each bar's window is read and its fit planned exactly as `analyze` does (anchor fits shared through
the instance's cache, full fits where `analyze` makes them). The warm-start EM of all warm bars then
runs in lockstep (`em_many`: hmmlearn's EM step for step, its C recursions row by row, the rest for every row at once); a bar
whose EM breaks down, does not converge, stops within 1e-6 of the tolerance, or is among the last
few still running is fitted one by one (`_hmm_em.fit_em`) exactly as in `analyze`. The causal filter of every bar is
one vectorised forward recursion (`forward_filter_many`, `forward_filter` for many rows). Only
candles up to `t` are read for the finding at `t`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from v7 import CandleSeries, InsufficientData, TheoryFinding, window_closes

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .markov_regime import HmmParams, MarkovRegime

LOG_FLOOR = 1e-300  # log(0) → about -690 instead of -inf and a warning
LOCKSTEP_MIN_ROWS = 24  # em_many stops its vectorised EM when fewer rows are still running (one-row EM is cheaper then)


def forward_filter(x: "np.ndarray", params: HmmParams) -> tuple[float, float, float]:
    """Filtered P(state 0 | x[0..T]), P(state 1 | x[0..T]) at the last bar and the log-likelihood.

    The forward recursion in log space: log α[t] = log b[t] + logsumexp(log α[t-1] + log A),
    normalised every step (the normaliser summed is the log-likelihood).
    """
    import numpy as np

    log_a = np.log(np.maximum(params.transmat, LOG_FLOOR)).tolist()
    a00, a01 = log_a[0]
    a10, a11 = log_a[1]
    variances = params.variances
    log_b = -0.5 * (np.log(2.0 * math.pi * variances) + (x[:, None] - params.means) ** 2 / variances)
    b0 = log_b[:, 0].tolist()
    b1 = log_b[:, 1].tolist()
    log_start = np.log(np.maximum(params.startprob, LOG_FLOOR)).tolist()
    exp, log1p = math.exp, math.log1p
    l0 = log_start[0] + b0[0]
    l1 = log_start[1] + b1[0]
    log_likelihood = 0.0
    for t in range(1, len(b0)):
        z = l0 + log1p(exp(l1 - l0)) if l0 >= l1 else l1 + log1p(exp(l0 - l1))
        log_likelihood += z
        l0 -= z
        l1 -= z
        u, v = l0 + a00, l1 + a10
        n0 = (u + log1p(exp(v - u)) if u >= v else v + log1p(exp(u - v))) + b0[t]
        u, v = l0 + a01, l1 + a11
        n1 = (u + log1p(exp(v - u)) if u >= v else v + log1p(exp(u - v))) + b1[t]
        l0, l1 = n0, n1
    z = l0 + log1p(exp(l1 - l0)) if l0 >= l1 else l1 + log1p(exp(l0 - l1))
    return exp(l0 - z), exp(l1 - z), log_likelihood + z


def forward_filter_many(xs: "np.ndarray", params: list[HmmParams]) -> tuple["np.ndarray", "np.ndarray", "np.ndarray"]:
    """`forward_filter` of each row of `xs` (B, T) under its own parameters, the recursion run for all rows at once."""
    import numpy as np

    trans = np.array([p.transmat for p in params])
    log_a = np.log(np.maximum(trans, LOG_FLOOR))
    a00, a01, a10, a11 = log_a[:, 0, 0], log_a[:, 0, 1], log_a[:, 1, 0], log_a[:, 1, 1]
    means = np.array([p.means for p in params])
    variances = np.array([p.variances for p in params])
    # (T, B) per state, as in forward_filter
    b0 = (-0.5 * (np.log(2.0 * math.pi * variances[:, 0])[:, None] + (xs - means[:, :1]) ** 2 / variances[:, :1])).T.copy()
    b1 = (-0.5 * (np.log(2.0 * math.pi * variances[:, 1])[:, None] + (xs - means[:, 1:]) ** 2 / variances[:, 1:])).T.copy()
    log_start = np.log(np.maximum(np.array([p.startprob for p in params]), LOG_FLOOR))

    def logsum(u: "np.ndarray", v: "np.ndarray") -> "np.ndarray":
        return np.maximum(u, v) + np.log1p(np.exp(-np.abs(u - v)))

    l0 = log_start[:, 0] + b0[0]
    l1 = log_start[:, 1] + b1[0]
    log_likelihood = np.zeros(xs.shape[0])
    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(1, b0.shape[0]):
            z = logsum(l0, l1)
            log_likelihood += z
            l0 = l0 - z
            l1 = l1 - z
            l0, l1 = logsum(l0 + a00, l1 + a10) + b0[t], logsum(l0 + a01, l1 + a11) + b1[t]
        z = logsum(l0, l1)
    return np.exp(l0 - z), np.exp(l1 - z), log_likelihood + z


def em_many(xs: "np.ndarray", starts: list[HmmParams], n_iter: int, tol: float) -> list[tuple[HmmParams, int] | None]:
    """`fit_em` (hmmlearn's EM: diagonal GaussianHMM, scaling forward-backward, default priors) from each start on
    each row of `xs` (B, T), the rows in lockstep.

    The forward and backward passes are hmmlearn's C recursions, one row at a time (a recursion cannot be
    vectorised over time); the frame probabilities, posteriors and the M-step are computed for all rows at
    once. Each answer is (parameters, iterations) when EM converged before `n_iter` with usable
    parameters, far from the tolerance's edge (every gain at least 1e-6 away from `tol`, so rounding
    cannot change the iteration it stops at); None otherwise, and for the rows still running when fewer
    than `LOCKSTEP_MIN_ROWS` are: the caller then runs `fit_em` on that row.
    """
    import numpy as np
    from hmmlearn import _hmmc

    from .markov_regime import HmmParams, usable

    count, length = xs.shape
    xs = np.ascontiguousarray(xs, dtype=np.float64)
    sp = np.array([p.startprob for p in starts], dtype=np.float64)  # (B, 2)
    tm = np.array([p.transmat for p in starts], dtype=np.float64)  # (B, 2, 2)
    mu = np.array([p.means for p in starts], dtype=np.float64)  # (B, 2)
    cv = np.array([p.variances for p in starts], dtype=np.float64)  # (B, 2)
    answers: list[tuple[HmmParams, int] | None] = [None] * count
    active = np.arange(count)
    previous = np.full(count, np.nan)
    ok = np.ones(count, dtype=bool)
    log_2pi = np.log(2 * np.pi)
    tiny = np.finfo(float).tiny
    forward, backward, xi_sum = _hmmc.forward_scaling, _hmmc.backward_scaling, _hmmc.compute_scaling_xi_sum
    with np.errstate(all="ignore"):
        for iteration in range(1, n_iter + 1):
            rows = active.shape[0]
            X = xs[active]  # (A, T)
            s, a, m, c = sp[active], tm[active], mu[active], cv[active]
            cc = np.maximum(c, tiny)
            # frame probabilities (A, T, 2): hmmlearn's diagonal log density, then exp
            # (each state's (A, T) plane computed contiguously, then interleaved for the C recursions)
            log_c = log_2pi + np.log(cc)
            frames = np.empty((rows, length, 2))
            for k in (0, 1):
                frames[:, :, k] = np.exp(-0.5 * (log_c[:, k:k + 1] + (X - m[:, k:k + 1]) ** 2 / cc[:, k:k + 1]))
            fwd = np.empty_like(frames)
            bwd = np.empty_like(frames)
            trans = np.zeros((rows, 2, 2))
            log_prob = np.full(rows, np.nan)
            broken = np.zeros(rows, dtype=bool)
            for j in range(rows):
                try:
                    log_prob[j], fwd[j], scaling = forward(s[j], a[j], frames[j])
                    bwd[j] = backward(s[j], a[j], frames[j], scaling)
                    trans[j] = xi_sum(fwd[j], a[j], bwd[j], frames[j])
                except ValueError:  # the forward pass underflowed: fit_em raises the same, this row is left to it
                    broken[j] = True
            # posteriors per state as contiguous (A, T) planes, normalised over the two states
            q0 = fwd[:, :, 0] * bwd[:, :, 0]
            q1 = fwd[:, :, 1] * bwd[:, :, 1]
            total = q0 + q1
            total[total == 0] = 1
            q0 /= total
            q1 /= total
            broken |= ~(np.isfinite(log_prob) & np.isfinite(q0).all(axis=1) & np.isfinite(q1).all(axis=1))
            # M-step (hmmlearn's, with its default priors)
            start = np.where(s == 0, 0.0, np.maximum(np.stack([q0[:, 0], q1[:, 0]], axis=1), 0))
            start = start / start.sum(axis=1, keepdims=True)
            trans = np.where(a == 0, 0.0, np.maximum(trans, 0))
            row = trans.sum(axis=2, keepdims=True)
            trans = trans / np.where(row == 0, 1.0, row)
            post = np.stack([q0.sum(axis=1), q1.sum(axis=1)], axis=1)  # (A, 2)
            X2 = X * X
            obs = np.stack([(q0 * X).sum(axis=1), (q1 * X).sum(axis=1)], axis=1)
            obs2 = np.stack([(q0 * X2).sum(axis=1), (q1 * X2).sum(axis=1)], axis=1)
            means = obs / post
            c_n = obs2 - 2 * means * obs + means ** 2 * post
            covars = (1e-2 + c_n) / np.maximum(post, 1e-5)
            sp[active], tm[active], mu[active], cv[active] = start, trans, means, covars
            gain = log_prob - previous[active]
            previous[active] = log_prob
            edge = np.abs(gain - tol) < 1e-6
            ok[active[broken | edge]] = False
            done = broken | edge | (gain < tol)
            for j in np.flatnonzero(done):
                b = int(active[j])
                if ok[b] and iteration < n_iter:
                    params = HmmParams(sp[b].copy(), tm[b].copy(), mu[b].copy(), cv[b].copy())
                    answers[b] = (params, iteration) if usable(params) else None
            active = active[~done]
            if active.shape[0] < LOCKSTEP_MIN_ROWS:  # a lockstep iteration's fixed cost is that of ~ that many one-row steps:
                break  # the few rows left (long or failing fits) are left to fit_em
    return answers


def analyze_batch(theory: "MarkovRegime", history: CandleSeries, ends: Sequence[int], lookback: int) -> list[TheoryFinding | InsufficientData]:
    """`theory.analyze(history.slice(max(0, t + 1 - lookback), t + 1))` (or the `InsufficientData` it raises) for each t."""
    import numpy as np

    from .markov_regime import RegimeFit, standardise

    cfg = theory.config
    out: list[TheoryFinding | InsufficientData | None] = [None] * len(ends)
    planned: list[tuple[int, "np.ndarray", "np.ndarray", "np.ndarray", float, float, RegimeFit]] = []
    for i, t in enumerate(ends):
        window = history.slice(max(0, t + 1 - lookback), t + 1)
        try:
            close = window_closes(window, cfg.window, 50, cfg)
            returns, x, centre, scale = standardise(close)
            plan = theory.regime_fit(window, x, centre, scale, defer_warm=True)
        except InsufficientData as exc:
            out[i] = exc
            continue
        planned.append((i, close, returns, x, centre, scale, plan))
    pending = [k for k, item in enumerate(planned) if item[6].how == "pending"]
    if pending:
        answers = em_many(np.array([planned[k][3] for k in pending]), [planned[k][6].params for k in pending], cfg.n_iter, cfg.tol)
        for k, answer in zip(pending, answers):
            i, close, returns, x, centre, scale, plan = planned[k]
            try:
                fitted = RegimeFit(answer[0], answer[1], "warm", plan.anchor_bars_ago) if answer is not None else theory.warm_fit(x, plan.params, plan.anchor_bars_ago)
            except InsufficientData as exc:
                out[i] = exc
                continue
            planned[k] = (i, close, returns, x, centre, scale, fitted)
    ready = [item for item in planned if item[6].how != "pending" and out[item[0]] is None]
    by_length: dict[int, list] = {}
    for item in ready:
        by_length.setdefault(item[3].shape[0], []).append(item)
    for group in by_length.values():
        p0, p1, ll = forward_filter_many(np.array([item[3] for item in group]), [item[6].params for item in group])
        for (i, close, returns, x, centre, scale, fitted), a, b, c in zip(group, p0.tolist(), p1.tolist(), ll.tolist()):
            try:
                out[i] = theory._finding(close, returns, centre, scale, fitted.params, fitted.iterations, a, b, c)
            except InsufficientData as exc:
                out[i] = exc
    return out  # type: ignore[return-value]
