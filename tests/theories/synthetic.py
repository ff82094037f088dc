"""Synthetic series with known answers for the theory tests and the benchmark (all seeded, vectorised)."""

from __future__ import annotations

import numpy as np

from v7 import CandleSeries

START_TIME = 1_600_000_000  # unix seconds; 1,600 s past an hour, so markov_regime never anchors on these series (its own tests align them)


def fgn(hurst: float, n: int, paths: int, seed: int) -> np.ndarray:
    """Exact fractional Gaussian noise, shape (paths, n), unit variance (Davies–Harte circulant embedding).

    Each complex FFT yields two independent paths (real and imaginary parts).
    """
    k = np.arange(n + 1, dtype=np.float64)
    gamma = 0.5 * (np.abs(k + 1) ** (2 * hurst) - 2 * k ** (2 * hurst) + np.abs(k - 1) ** (2 * hurst))
    row = np.concatenate([gamma, gamma[-2:0:-1]])  # circulant first row, length 2n
    eigen = np.fft.fft(row).real
    if eigen.min() < -1e-8:  # pragma: no cover - cannot happen for 0 < H < 1
        raise ValueError("circulant embedding is not non-negative definite")
    size = row.shape[0]
    rng = np.random.default_rng([seed, n, int(round(hurst * 1000))])
    half = (paths + 1) // 2
    noise = rng.standard_normal((half, size)) + 1j * rng.standard_normal((half, size))
    y = np.fft.fft(np.sqrt(np.clip(eigen, 0.0, None) / size) * noise, axis=1)
    return np.concatenate([y.real[:, :n], y.imag[:, :n]])[:paths]


def fbm_log_prices(hurst: float, n: int, paths: int, seed: int, sigma: float = 0.01) -> np.ndarray:
    """Log-price paths of n points whose n-1 increments are fGn with per-bar std `sigma`."""
    increments = fgn(hurst, n - 1, paths, seed) * sigma
    return np.concatenate([np.zeros((paths, 1)), np.cumsum(increments, axis=1)], axis=1)


def ar1(phi: float, n: int, seed: int, sigma: float = 0.01, paths: int = 1) -> np.ndarray:
    """AR(1) returns r[t] = phi * r[t-1] + e[t], stationary start, shape (paths, n) or (n,) for one path."""
    from scipy.signal import lfilter

    rng = np.random.default_rng([seed, n, 0xA41])
    eps = rng.standard_normal((paths, n)) * sigma
    eps[:, 0] /= np.sqrt(1 - phi**2)
    out = lfilter([1.0], [1.0, -phi], eps, axis=1)
    return out[0] if paths == 1 else out


def sine_plus_noise(n: int, seed: int, period: float = 24.0, amplitude: float = 0.01, noise: float = 0.01) -> np.ndarray:
    """A cycle of `period` bars in the returns plus white noise of the same size."""
    rng = np.random.default_rng([seed, n, 0x51])
    t = np.arange(n)
    return amplitude * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + noise * rng.standard_normal(n)


def white_noise(n: int, seed: int, sigma: float = 0.01) -> np.ndarray:
    return np.random.default_rng([seed, n, 0x3]).standard_normal(n) * sigma


def two_state_regime(
    n: int, seed: int, sigmas: tuple[float, float] = (0.01, 0.03), p_stay: float = 0.99, means: tuple[float, float] = (0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Returns and states (0 = calm, 1 = stressed) of a sticky two-state Markov chain, stationary start."""
    rng = np.random.default_rng([seed, n, 0x2])
    switches = rng.random(n) >= p_stay
    switches[0] = rng.random() < 0.5  # stationary distribution of a symmetric chain is 50/50
    states = np.cumsum(switches) % 2
    sig = np.asarray(sigmas)[states]
    mu = np.asarray(means)[states]
    return mu + sig * rng.standard_normal(n), states


def prices_from_log_returns(returns: np.ndarray, start: float = 100.0) -> np.ndarray:
    return start * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))


def series(close: np.ndarray, symbol: str = "SYN-USD", granularity: str = "1h", validate: bool = True) -> CandleSeries:
    """A CandleSeries around the given closes (open = previous close; high/low envelope them).

    `validate=False` keeps NaN, inf, zero or negative closes as they are (for abstention tests).
    """
    close = np.asarray(close, dtype=np.float64)
    n = close.shape[0]
    open_ = np.concatenate([[close[0]], close[:-1]])
    if validate:
        assert np.isfinite(close).all() and (close > 0).all(), "use validate=False for broken closes"
    with np.errstate(invalid="ignore"):
        high = np.fmax(open_, close)
        low = np.fmin(open_, close)
    return CandleSeries(
        symbol=symbol,
        granularity=granularity,
        timestamp=START_TIME + 3600 * np.arange(n, dtype=np.int64),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=np.ones(n),
    )


def with_closes(candles: CandleSeries, close: np.ndarray) -> CandleSeries:
    """The same candles with other closes (bypassing validation)."""
    return series(close, candles.symbol, candles.granularity, validate=False)


def hmmlearn_model(params, n_iter: int = 10, tol: float = 1e-2):
    """hmmlearn's GaussianHMM holding markov_regime's `HmmParams` (diagonal, scaling, no initialisation of its
    own): the oracle for likelihoods, posteriors and EM."""
    from hmmlearn.hmm import GaussianHMM

    model = GaussianHMM(n_components=2, covariance_type="diag", n_iter=n_iter, tol=tol, init_params="", implementation="scaling")
    model.startprob_, model.transmat_ = params.startprob, params.transmat
    model.means_, model.covars_ = params.means.reshape(2, 1), params.variances.reshape(2, 1)
    return model
