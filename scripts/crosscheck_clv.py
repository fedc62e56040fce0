"""Reference computations for the predictive CLV KPIs (loaded by crosscheck.py when
"crosscheck_clv" is in its EXTENSIONS list; needs numpy, scipy and mpmath in the venv).

Written from the definitions of `crm-kpi list --long`, not from the Rust code:

- clv_predictive: the RFM columns (frequency, recency, t, monetary_value) in DuckDB SQL, exact.
  The model columns (p_alive, expected_purchases, expected_avg_value, clv) are evaluated in
  Python at the parameters crm-kpi reports in clv_model, with the closed forms of Fader, Hardie
  & Lee (2005) and mpmath's hypergeometric function at 30 digits: they check the formulas, the
  unit conversion and the discounted sum, to 1e-9.
- clv_model: an independent maximum-likelihood fit (scipy: Nelder-Mead on the log-parameters
  from all-ones, then BFGS) on the SQL RFM. Two optimizers agree only to the flatness of the
  likelihood, so an estimate counts as equal when within 1e-5 (relative) of the reference, and
  a standard error (finite-difference Hessian here too, with another step) when within 2e-3;
  the reference row then carries crm-kpi's value so the exact comparison passes, and otherwise
  its own value, which is reported as a mismatch. The maximized log-likelihood and n_customers
  are compared exactly (to 1e-9): the likelihood is flat at the optimum.

Default configuration only: UTC, time_unit weeks, horizon 12 months, 1% a month, segment_by none.
"""

import math
import sys

WEEK = 7.0
MONTH = 30.4375
HORIZON = 12
RATE = 0.01
EST_TOL, SE_TOL = 1e-5, 2e-3


def rfm_sql():
    return """
        WITH o AS (
            SELECT account_id, CAST(ordered_at AS DATE) AS day,
                   CAST(ROUND(amount_base * 1e6) AS BIGINT) AS micros
            FROM orders_all
            WHERE ordered_at <= as_of_ts() AND NOT COALESCE(is_refund, false)),
        d AS (SELECT account_id, day, SUM(micros) AS spend FROM o GROUP BY account_id, day),
        f AS (SELECT account_id, MIN(day) AS first_day, MAX(day) AS last_day, COUNT(*) AS n
              FROM d GROUP BY account_id),
        r AS (SELECT d.account_id, SUM(d.spend) AS repeat_spend
              FROM d JOIN f ON d.account_id = f.account_id AND d.day > f.first_day
              GROUP BY d.account_id)
        SELECT f.account_id, CAST(n - 1 AS INTEGER) AS frequency,
               (last_day - first_day) / 7.0 AS recency,
               (as_of_date() - first_day) / 7.0 AS t,
               CASE WHEN n > 1 THEN CAST(r.repeat_spend AS DOUBLE) / 1e6 / (n - 1) END AS monetary_value
        FROM f LEFT JOIN r ON f.account_id = r.account_id
        ORDER BY f.account_id"""


def bg_ll(theta, x, tx, T):
    import numpy as np
    from scipy.special import betaln, gammaln
    r, al, a, b = theta
    still = -(r + x) * np.log(al + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        dropped = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(al + tx), -np.inf)
    ll = gammaln(r + x) - gammaln(r) + r * np.log(al) + betaln(a, b + x) - betaln(a, b) + np.logaddexp(still, dropped)
    return float(np.sum(ll))


def gg_ll(theta, x, m):
    import numpy as np
    from scipy.special import gammaln
    p, q, v = theta
    px = p * x
    ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * np.log(m) + px * np.log(x) \
        - (px + q) * np.log(x * m + v)
    return float(np.sum(ll))


def mle(ll, k):
    """Maximizes ll(theta) over theta > 0: Nelder-Mead on log-parameters from all-ones, then BFGS."""
    import numpy as np
    from scipy.optimize import minimize
    f = lambda phi: -ll(np.exp(phi)) if np.all(np.abs(phi) < 50) else np.inf
    res = minimize(f, np.zeros(k), method="Nelder-Mead",
                   options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 200000, "maxfev": 200000})
    res = minimize(f, res.x, method="BFGS", options={"gtol": 1e-9})
    return np.exp(res.x)


def std_errors(ll, theta, h=2e-4):
    """sqrt(diag(inverse information)) with the information from central differences on log-parameters."""
    import numpy as np
    phi = np.log(theta)
    k = len(phi)
    g = lambda p: -ll(np.exp(p))
    H = np.zeros((k, k))
    f0 = g(phi)
    for i in range(k):
        for j in range(i, k):
            if i == j:
                e = np.zeros(k); e[i] = h
                H[i, i] = (g(phi + e) - 2 * f0 + g(phi - e)) / h ** 2
            else:
                ei = np.zeros(k); ei[i] = h
                ej = np.zeros(k); ej[j] = h
                H[i, j] = H[j, i] = (g(phi + ei + ej) - g(phi + ei - ej) - g(phi - ei + ej) + g(phi - ei - ej)) / (4 * h * h)
    try:
        cov = np.linalg.inv(H)
    except np.linalg.LinAlgError:
        return [None] * k
    return [float(theta[i] * math.sqrt(cov[i, i])) if cov[i, i] > 0 else None for i in range(k)]


def expected(theta, x, tx, T, t):
    """P(alive) and E[purchases in (T, T+t]] (FHL 2005 eq. 10), with mpmath."""
    import mpmath as M
    M.mp.dps = 30
    r, al, a, b = (M.mpf(v) for v in theta)
    tx, T, t = M.mpf(tx), M.mpf(T), M.mpf(t)
    p_alive = M.mpf(1) if x == 0 else 1 / (1 + a / (b + x - 1) * ((al + T) / (al + tx)) ** (r + x))
    if t == 0:
        return p_alive, M.mpf(0)
    c = a + b + x - 1
    z = t / (al + T + t)
    e = c / (a - 1) * (1 - ((al + T) / (al + T + t)) ** (r + x) * M.hyp2f1(r + x, b + x, c, z))
    return p_alive, p_alive * e


def mine(con, kpi):
    out, as_of = sys.argv[2], sys.argv[3]
    cols, rows = CC.fetch(con, f"SELECT * FROM read_parquet('{out}/{kpi}/as_of={as_of}/part-0.parquet')")
    return rows


def fit_reference(con):
    import numpy as np
    _, rfm = CC.fetch(con, rfm_sql())
    x = np.array([r["frequency"] for r in rfm], dtype=float)
    tx = np.array([r["recency"] for r in rfm], dtype=float)
    T = np.array([r["t"] for r in rfm], dtype=float)
    spend = [(r["frequency"], r["monetary_value"]) for r in rfm if r["frequency"] > 0 and (r["monetary_value"] or 0) > 0]
    gx = np.array([s[0] for s in spend], dtype=float)
    gm = np.array([s[1] for s in spend], dtype=float)
    out = {}
    if int(np.sum(x > 0)) >= 4:
        ll = lambda th: bg_ll(th, x, tx, T)
        th = mle(ll, 4)
        out["bg_nbd"] = (dict(zip(["r", "alpha", "a", "b"], th)), dict(zip(["r", "alpha", "a", "b"], std_errors(ll, th))),
                         ll(th), len(rfm))
    else:
        out["bg_nbd"] = (None, None, None, len(rfm))
    if len(spend) >= 3:
        ll = lambda th: gg_ll(th, gx, gm)
        th = mle(ll, 3)
        out["gamma_gamma"] = (dict(zip(["p", "q", "v"], th)), dict(zip(["p", "q", "v"], std_errors(ll, th))), ll(th),
                              len(spend))
    else:
        out["gamma_gamma"] = (None, None, None, len(spend))
    return rfm, out


def clv_model_ref(con):
    _, fits = fit_reference(con)
    crm = {(r["segment"], r["model"], r["param"]): r for r in mine(con, "clv_model")}
    rows = []
    for model, (est, se, ll, n) in fits.items():
        for param in (["r", "alpha", "a", "b"] if model == "bg_nbd" else ["p", "q", "v"]):
            m = crm.get(("all", model, param), {})

            def agree(ref, got, tol):
                if ref is None or got is None:
                    return ref
                return got if abs(ref - got) <= tol * abs(ref) else ref
            rows.append({
                "segment": "all", "model": model, "param": param,
                "value": agree(est[param] if est else None, m.get("value"), EST_TOL),
                "std_err": agree(se[param] if se else None, m.get("std_err"), SE_TOL),
                "log_likelihood": ll, "n_customers": n,
            })
    cols = ["segment", "model", "param", "value", "std_err", "log_likelihood", "n_customers"]
    return cols, rows


def clv_predictive_ref(con):
    _, rfm = CC.fetch(con, rfm_sql())
    model = {(r["model"], r["param"]): r["value"] for r in mine(con, "clv_model") if r["segment"] == "all"}
    bg = [model.get(("bg_nbd", k)) for k in ("r", "alpha", "a", "b")]
    gg = [model.get(("gamma_gamma", k)) for k in ("p", "q", "v")]
    bg = None if any(v is None for v in bg) else bg
    gg = None if any(v is None for v in gg) else gg
    u = MONTH / WEEK
    cache = {}
    rows = []
    for r in rfm:
        x, tx, T, m = r["frequency"], r["recency"], r["t"], r["monetary_value"]
        row = dict(r, p_alive=None, expected_purchases=None, expected_avg_value=None, clv=None)
        avg = None
        if gg is not None and gg[1] > 1:
            p, q, v = gg
            avg = p * (v + x * (m or 0.0)) / (p * x + q - 1) if x > 0 else p * v / (q - 1)
        row["expected_avg_value"] = avg
        if bg is not None:
            key = (x, tx, T)
            if key not in cache:
                es = [expected(bg, x, tx, T, i * u) for i in range(HORIZON + 1)]
                disc = sum((es[i][1] - es[i - 1][1]) / (1 + RATE) ** i for i in range(1, HORIZON + 1))
                cache[key] = (float(es[0][0]), float(es[HORIZON][1]), float(disc))
            pa, e, disc = cache[key]
            row["p_alive"], row["expected_purchases"] = pa, e
            row["clv"] = disc * avg if avg is not None else None
        rows.append(row)
    cols = ["account_id", "frequency", "recency", "t", "monetary_value", "p_alive", "expected_purchases",
            "expected_avg_value", "clv"]
    return cols, rows


CC = None


def queries(cc):
    """{kpi: (key columns, build, build_takes_connection)}"""
    global CC
    CC = cc
    return {
        "clv_predictive": (["account_id"], clv_predictive_ref, True),
        "clv_model": (["segment", "model", "param"], clv_model_ref, True),
    }
