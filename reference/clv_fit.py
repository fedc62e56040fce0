"""The model side of the predictive CLV KPIs (clv_predictive, clv_model) for the DuckDB and
pandas references: maximum-likelihood fits of BG/NBD and Gamma-Gamma, standard errors and the
per-customer predictions, vectorized with numpy/scipy. Shared by both engines on purpose: this is
the statistics of the definition (likelihoods, an optimizer, closed forms), not the KPI's data
logic. Each engine computes the RFM itself (DuckDB in SQL, pandas in pandas) and only hands the
arrays here, so the RFM columns are still checked independently and exactly.

Written from `crm-kpi list --long` and Fader, Hardie & Lee (2005), not from the Rust code:
- BG/NBD log-likelihood (FHL 2005 eq. 6) and the Gamma-Gamma density of each customer's mean
  repeat spend, with the terms of one column evaluated once per distinct value;
- fit: Nelder-Mead on the log-parameters from all-ones on an evenly spaced subsample of at most
  SUBSAMPLE customers (a start only), then Newton steps on all customers with a central-difference
  gradient (step 1e-5) and the central-difference Hessian (step 1e-3), until a full step is below
  1e-6 in the log-parameters (the step after it is at the finite differences' noise floor, about
  1e-8: estimates to about 1e-8 relative, log-likelihood to about 1e-15); a failed Newton
  (Hessian not positive definite, no progress) falls back to BFGS. An estimate outside
  [1e-8, 1e8] or no convergence gives no fit (null columns), like crm-kpi;
- std_err: sqrt of the diagonal of the inverse of that Hessian (step 1e-3 in the log-parameters,
  the definition's), by the delta method;
- predictions: P(alive) in log space (no overflow for heavy buyers), E[X(t)] (FHL 2005 eq. 10)
  with scipy.special.hyp2f1 for the month ends of the horizon of every customer at once, each
  month's expected spend discounted at the config's monthly rate. scipy's hyp2f1 was checked
  against mpmath at 30 digits (`python -m reference.clv_fit STORE AS_OF [N]`, see check_hyp2f1):
  largest relative difference 9.5e-15 over all 12,548 customers x 12 month ends at scale s,
  1.0e-14 over 3,000 customers at scale m (frequency up to 171), so double precision is enough
  and no per-customer mpmath is needed.

The config's [clv] time_unit, horizon_months and monthly_discount_rate are read; segment_by
must be "none" (one model for every customer).
"""

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, expit, gammaln, hyp2f1

from .common import CLV_MONTH_DAYS

SUBSAMPLE = 10000
BG_PARAMS = ["r", "alpha", "a", "b"]
GG_PARAMS = ["p", "q", "v"]
MODEL_COLUMNS = ["segment", "model", "param", "value", "std_err", "log_likelihood", "n_customers"]
PREDICTIVE_COLUMNS = ["p_alive", "expected_purchases", "expected_avg_value", "clv"]


def require_supported(cfg, engine):
    if cfg.clv_segment_by != "none":
        raise SystemExit(
            f'{engine}: {cfg.path} sets [clv] segment_by = {cfg.clv_segment_by!r}; the references implement "none" only'
        )


def bg_loglik(x, tx, T):
    """The BG/NBD log-likelihood of customers (x, tx, T) as a function of (r, alpha, a, b). The
    terms that depend on one column only are evaluated once per distinct value (frequencies and
    day counts repeat a lot) and weighted by their counts."""
    xu, xc = np.unique(x, return_counts=True)
    txu, txi = np.unique(tx, return_inverse=True)
    Tu, Ti = np.unique(T, return_inverse=True)
    pos = x > 0
    xb = np.maximum(x - 1, 0)  # b + x - 1 only matters where x > 0

    def ll(theta):
        r, al, a, b = theta
        per_x = gammaln(r + xu) - gammaln(r) + r * np.log(al) + betaln(a, b + xu) - betaln(a, b)
        still = -(r + x) * np.log(al + Tu)[Ti]
        dropped = np.log(a) - np.log(b + xb) - (r + x) * np.log(al + txu)[txi]
        mix = np.where(pos, np.logaddexp(still, dropped), still)
        return float(np.dot(xc, per_x) + np.sum(mix))

    return ll


def gg_loglik(x, m):
    """The Gamma-Gamma log-likelihood of customers' (x > 0, mean repeat spend m > 0) as a
    function of (p, q, v): the density of each customer's mean spend."""
    xu, xi, xc = np.unique(x, return_inverse=True, return_counts=True)
    sum_log_m = np.sum(np.log(m))
    x_log_m = np.dot(x, np.log(m))
    log_xu = np.log(xu)
    xm = x * m

    def ll(theta):
        p, q, v = theta
        px = p * xu
        per_x = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + px * log_xu
        return float(np.dot(xc, per_x) + p * x_log_m - sum_log_m - np.sum((p * x + q) * np.log(xm + v)))

    return ll


def _grad(f, phi, h=1e-5):
    g = np.zeros(len(phi))
    for i in range(len(phi)):
        e = np.zeros(len(phi))
        e[i] = h
        g[i] = (f(phi + e) - f(phi - e)) / (2 * h)
    return g


def _hess(f, phi, h=1e-3):
    k = len(phi)
    H = np.zeros((k, k))
    f0 = f(phi)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h
        H[i, i] = (f(phi + ei) - 2 * f0 + f(phi - ei)) / h**2
        for j in range(i + 1, k):
            ej = np.zeros(k)
            ej[j] = h
            H[i, j] = H[j, i] = (f(phi + ei + ej) - f(phi + ei - ej) - f(phi - ei + ej) + f(phi - ei - ej)) / (
                4 * h * h
            )
    return H


def _newton(f, phi, max_iter=100):
    """Minimizes f from phi with Newton steps (Hessian refreshed every 4 steps); None when it
    does not converge."""
    for it in range(max_iter):
        if it % 4 == 0:
            H = _hess(f, phi)
            try:
                np.linalg.cholesky(H)
            except np.linalg.LinAlgError:
                return None
        step = -np.linalg.solve(H, _grad(f, phi))
        f0, t = f(phi), 1.0
        while f(phi + t * step) > f0 + 1e-12 * abs(f0) and t > 1e-4:
            t /= 2
        if t <= 1e-4:
            return None
        phi = phi + t * step
        # Quadratic convergence: once a full step is below 1e-6 the next one is at the noise
        # floor of the finite differences (about 1e-8 in the log-parameters).
        if t == 1.0 and np.max(np.abs(step)) < 1e-6:
            return phi
    return None


def mle(ll, k, ll_sub, starts=()):
    """(theta, hessian of -ll in log-parameters) or None. `ll_sub` is the log-likelihood on the
    subsample used for the Nelder-Mead starts: from all-ones and from each of `starts`
    (log-parameters); the best optimum after the Newton polish wins (scale l: Gamma-Gamma from
    all-ones alone ends on a ridge far from the optimum)."""

    def on(fn):
        return lambda phi: -fn(np.exp(phi)) if np.all(np.abs(phi) < 50) else np.inf

    f = on(ll)
    best = None
    for s0 in [np.zeros(k), *[np.asarray(s, dtype=np.float64) for s in starts]]:
        start = minimize(
            on(ll_sub),
            s0,
            method="Nelder-Mead",
            options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 20000, "maxfev": 20000},
        ).x
        phi = _newton(f, start)
        if phi is None:  # rare: fall back to a plain quasi-Newton search, then polish again
            res = minimize(f, start, method="BFGS", options={"gtol": 1e-6})
            phi = _newton(f, res.x) if np.isfinite(res.fun) else None
        if phi is not None and (best is None or f(phi) < f(best)):
            best = phi
    if best is None:
        return None
    theta = np.exp(best)
    if not np.all((theta >= 1e-8) & (theta <= 1e8)):
        return None
    return theta, _hess(f, best)


def std_errors(theta, H):
    try:
        np.linalg.cholesky(H)
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return [None] * len(theta)
    return [float(theta[i] * math.sqrt(cov[i, i])) if cov[i, i] > 0 else None for i in range(len(theta))]


def _subsample(n):
    """Indices of an evenly spaced subsample of at most SUBSAMPLE of n rows."""
    return np.arange(n) if n <= SUBSAMPLE else np.floor(np.arange(SUBSAMPLE) * (n / SUBSAMPLE)).astype(np.int64)


def fit_models(x, tx, T, m):
    """Fits both models on every customer's RFM (arrays; m NaN when null). Returns
    {model: (params, estimates or None, std errors or None, log-likelihood or None, n_customers)}."""
    x, tx, T, m = (np.asarray(v, dtype=np.float64) for v in (x, tx, T, m))
    out = {}
    bg = None
    if int(np.sum(x > 0)) >= 4:
        s = _subsample(len(x))
        ll = bg_loglik(x, tx, T)
        bg = mle(ll, 4, bg_loglik(x[s], tx[s], T[s]))
    out["bg_nbd"] = (
        (BG_PARAMS, None, None, None, len(x)) if bg is None else (BG_PARAMS, bg[0], std_errors(*bg), ll(bg[0]), len(x))
    )
    use = (x > 0) & (np.nan_to_num(m, nan=0.0) > 0)
    gx, gm = x[use], m[use]
    gg = None
    if len(gx) >= 3:
        s = _subsample(len(gx))
        ll = gg_loglik(gx, gm)
        # Second start: p = 1, q = 2, v = mean spend (then E[spend] = p v / (q - 1) = the mean).
        gg = mle(ll, 3, gg_loglik(gx[s], gm[s]), starts=[[0.0, math.log(2.0), math.log(float(np.mean(gm)))]])
    out["gamma_gamma"] = (
        (GG_PARAMS, None, None, None, len(gx))
        if gg is None
        else (GG_PARAMS, gg[0], std_errors(*gg), ll(gg[0]), len(gx))
    )
    return out


def model_columns(fits):
    """clv_model's columns (segment 'all') as lists."""
    cols = {c: [] for c in MODEL_COLUMNS}
    for model, (params, est, se, ll, n) in fits.items():
        for i, param in enumerate(params):
            for c, v in zip(
                MODEL_COLUMNS,
                ["all", model, param, None if est is None else float(est[i]), None if se is None else se[i], ll, n],
                strict=True,
            ):
                cols[c].append(v)
    return cols


def fits_from_model_rows(rows):
    """fit_models' result from clv_model rows (segment "all"; dicts of its columns), so that
    `predict` can be evaluated at another engine's parameters."""
    out = {}
    for model, params in (("bg_nbd", BG_PARAMS), ("gamma_gamma", GG_PARAMS)):
        got = {r["param"]: r for r in rows if r["segment"] == "all" and r["model"] == model}
        est = [got.get(p, {}).get("value") for p in params]
        if any(v is None for v in est):
            out[model] = (params, None, None, None, None)
        else:
            first = got[params[0]]
            out[model] = (
                params,
                np.array(est, dtype=np.float64),
                [got[p].get("std_err") for p in params],
                first.get("log_likelihood"),
                first.get("n_customers"),
            )
    return out


def _expected(bg, x, tx, T, t, log_p_alive):
    """E[X(t)] (FHL 2005 eq. 10) per customer, t a scalar > 0."""
    r, al, a, b = bg
    c = a + b + x - 1
    z = t / (al + T + t)
    lead = np.exp((r + x) * (np.log(al + T) - np.log(al + T + t)))
    return np.exp(log_p_alive) * c / (a - 1) * (1 - lead * hyp2f1(r + x, b + x, c, z))


def predict(fits, x, tx, T, m, cfg):
    """clv_predictive's model columns as float arrays (NaN = null), over the config's horizon
    and monthly discount rate, in its time unit."""
    horizon, rate = cfg.clv_horizon_months, cfg.clv_monthly_discount_rate
    x, tx, T, m = (np.asarray(v, dtype=np.float64) for v in (x, tx, T, m))
    n = len(x)
    nan = np.full(n, np.nan)
    _, gg, _, _, _ = fits["gamma_gamma"]
    avg = nan
    if gg is not None and gg[1] > 1:
        p, q, v = gg
        avg = p * (v + x * np.nan_to_num(m, nan=0.0)) / (p * x + q - 1)
    _, bg, _, _, _ = fits["bg_nbd"]
    if bg is None:
        return {"p_alive": nan, "expected_purchases": nan, "expected_avg_value": avg, "clv": nan}
    r, al, a, b = bg
    with np.errstate(divide="ignore", invalid="ignore"):
        log_k = np.log(a) - np.log(b + x - 1) + (r + x) * (np.log(al + T) - np.log(al + tx))
    log_k = np.where(x > 0, log_k, -np.inf)
    p_alive = expit(-log_k)
    log_p_alive = -np.logaddexp(0.0, log_k)
    u = CLV_MONTH_DAYS / cfg.clv_unit_days
    prev = np.zeros(n)
    disc = np.zeros(n)
    for i in range(1, horizon + 1):
        e = _expected(bg, x, tx, T, i * u, log_p_alive)
        disc += (e - prev) / (1 + rate) ** i
        prev = e
    return {"p_alive": p_alive, "expected_purchases": prev, "expected_avg_value": avg, "clv": disc * avg}


def check_hyp2f1(fits, x, tx, T, cfg, sample=2000, seed=1):
    """Largest relative difference between scipy's hyp2f1 and mpmath's (30 digits) over the
    hypergeometric calls of `predict` for a random sample of customers (all when fewer), and
    the same for E[X(H months)]."""
    import mpmath as M

    M.mp.dps = 30
    r, al, a, b = fits["bg_nbd"][1]
    rng = np.random.default_rng(seed)
    idx = np.arange(len(x)) if len(x) <= sample else rng.choice(len(x), sample, replace=False)
    worst = 0.0
    for j in idx:
        xi, Ti = float(x[j]), float(T[j])
        for i in range(1, cfg.clv_horizon_months + 1):
            t = i * CLV_MONTH_DAYS / cfg.clv_unit_days
            args = (r + xi, b + xi, a + b + xi - 1, t / (al + Ti + t))
            ref = M.hyp2f1(*(M.mpf(v) for v in args))
            got = hyp2f1(*args)
            worst = max(worst, float(abs((got - ref) / ref)))
    return len(idx), worst


def main():
    """python -m reference.clv_fit STORE AS_OF [N]: fit on the DuckDB RFM and check scipy's hyp2f1
    against mpmath for N customers (default 2000)."""
    import sys
    import time

    from . import duckdb as ref_duckdb
    from .common import load_config
    from .duckdb.customers import rfm_sql

    cfg = load_config()
    db = ref_duckdb.connect(sys.argv[1], sys.argv[2], cfg)
    d = db.con.execute(rfm_sql(cfg.clv_unit_days)).fetchnumpy()
    x, tx, T = d["frequency"].astype(float), d["recency"], d["t"]
    m = np.ma.filled(np.ma.masked_invalid(np.ma.asarray(d["monetary_value"], dtype=float)), np.nan)
    t0 = time.perf_counter()
    fits = fit_models(x, tx, T, m)
    print(f"fit {time.perf_counter() - t0:.2f} s: {fits}")
    t0 = time.perf_counter()
    predict(fits, x, tx, T, m, cfg)
    print(f"predict {time.perf_counter() - t0:.2f} s for {len(x)} customers")
    n, worst = check_hyp2f1(fits, x, tx, T, cfg, sample=int(sys.argv[3]) if len(sys.argv) > 3 else 2000)
    print(
        f"hyp2f1: {n} customers x {cfg.clv_horizon_months} horizons, "
        f"max relative difference scipy vs mpmath {worst:.3e}"
    )


if __name__ == "__main__":
    main()
