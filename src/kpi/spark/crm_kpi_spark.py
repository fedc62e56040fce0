"""crm-kpi on Apache Spark: the KPI catalog of a crm-kpi store, computed by Spark SQL.

Written into a bundle by `crm-kpi spark export` (do not edit the bundle's copy: export again).
The bundle holds this file, `bundle.json` (the run's parameters, the catalog's output schemas
and the store tables' columns) and `sql/` (the KPIs' Spark SQL, rendered for one configuration,
as_of and grain, in the order they run). Runs with no crm-kpi binary on the cluster:

    spark-submit crm_kpi_spark.py --store STORE --out OUT

STORE and OUT are Hadoop paths (a local folder, s3a://, abfss://, gs://, dbfs:/, hdfs://). The
store is read through its `_manifest.json`, so only committed files are read. Every KPI is
written to OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet with the schema of
`crm-kpi list --json` (counts int64, timestamps microseconds UTC), and the run manifest to
OUT/_runs/<run id>.json and OUT/_runs/latest.json, as `crm-kpi run` writes them. The outputs are
staged in OUT/.staging-<run id> and moved into place once every KPI is written.
"""

import argparse
import datetime
import json
import os
import re
import sys
import time

BUNDLE = os.path.dirname(os.path.abspath(__file__))

# Catalog types (Arrow names, as `crm-kpi list --json` gives them) as Spark SQL types.
SPARK_TYPES = {
    "boolean": "BOOLEAN",
    "int32": "INT",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "string": "STRING",
    "date": "DATE",
    "timestamp[us, UTC]": "TIMESTAMP",
}


def spark_type(t):
    if t.startswith("list<") and t.endswith(">"):
        return f"ARRAY<{spark_type(t[5:-1])}>"
    if t not in SPARK_TYPES:
        raise SystemExit(f"crm_kpi_spark: no Spark type for the catalog type {t}")
    return SPARK_TYPES[t]


def statements(text):
    """The statements of a SQL file: split at each `;` outside quotes and `--` comments."""
    out, cur, i, n = [], [], 0, len(text)
    quote = None
    while i < n:
        c = text[i]
        if quote:
            cur.append(c)
            if c == quote:
                quote = None
        elif c in "'\"`":
            quote = c
            cur.append(c)
        elif c == "-" and text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            cur.append(text[i:j])
            i = j
            continue
        elif c == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return [s.strip() for s in out if _code(s)]


def _code(s):
    """Whether a statement has anything but comments and blanks."""
    return any(line.strip() and not line.strip().startswith("--") for line in s.splitlines())


class Hadoop:
    """Files through Hadoop's FileSystem (any scheme the cluster is configured for)."""

    def __init__(self, spark):
        self.jvm = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()

    def path(self, p):
        return self.jvm.org.apache.hadoop.fs.Path(p)

    def fs(self, p):
        return self.path(p).getFileSystem(self.conf)

    def exists(self, p):
        return self.fs(p).exists(self.path(p))

    def read_text(self, p):
        fs = self.fs(p)
        stream = fs.open(self.path(p))
        try:
            reader = self.jvm.java.io.BufferedReader(self.jvm.java.io.InputStreamReader(stream, "UTF-8"))
            lines = []
            while True:
                line = reader.readLine()
                if line is None:
                    break
                lines.append(line)
            return "\n".join(lines)
        finally:
            stream.close()

    def write_text(self, p, text):
        fs = self.fs(p)
        stream = fs.create(self.path(p), True)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def list(self, p):
        return [s.getPath().toString() for s in self.fs(p).listStatus(self.path(p))]

    def mkdirs(self, p):
        self.fs(p).mkdirs(self.path(p))

    def rename(self, src, dst):
        if not self.fs(src).rename(self.path(src), self.path(dst)):
            raise SystemExit(f"crm_kpi_spark: cannot move {src} to {dst}")

    def delete(self, p):
        self.fs(p).delete(self.path(p), True)


def join(*parts):
    return "/".join(p.rstrip("/") for p in parts)


def register_store(spark, hadoop, store, bundle):
    """A temp view `<table>_all` per store table: its committed files (from _manifest.json), or
    an empty table of the table's columns when the store holds none."""
    manifest_path = join(store, "_manifest.json")
    if not hadoop.exists(manifest_path):
        raise SystemExit(f"crm_kpi_spark: {manifest_path}: not a crm-kpi store (no _manifest.json)")
    manifest = json.loads(hadoop.read_text(manifest_path))
    for table, columns in bundle["tables"].items():
        entry = manifest.get("tables", {}).get(table)
        files = [join(store, f["path"]) for f in entry["files"]] if entry else []
        ddl = ", ".join(f"`{c}` {spark_type(t)}" for c, t in columns)
        if files:
            df = spark.read.option("mergeSchema", "true").parquet(*files)
            have = set(df.columns)
            # Only the canonical columns, cast to their types (a file written before a column
            # existed reads it as null).
            cols = [
                (f"CAST(`{c}` AS {spark_type(t)}) AS `{c}`" if c in have else f"CAST(NULL AS {spark_type(t)}) AS `{c}`")
                for c, t in columns
            ]
            df.selectExpr(*cols).createOrReplaceTempView(f"{table}_all")
        else:
            spark.createDataFrame([], ddl).createOrReplaceTempView(f"{table}_all")
    return manifest


CHECKPOINT = re.compile(r"^\s*--\s*checkpoint:\s*(\w+)\s*$", re.MULTILINE)


def run_sql(spark, path, text):
    """Runs every statement of a SQL file; returns the DataFrame of the last one.

    A statement preceded by `-- checkpoint: NAME` (a `CACHE TABLE NAME AS ...`) is computed
    once and its view replaced by a local checkpoint of its rows: later queries naming it no
    longer carry its definition. Without it, the views built on `history` (a group-by of
    struct maxima) ran the catalog about 1.6x slower on the sample store, each KPI's plan
    failing to reuse them."""
    df = None
    for s in statements(text):
        try:
            df = spark.sql(s)
            for name in CHECKPOINT.findall(s):
                rows = spark.table(name).localCheckpoint(eager=True)
                spark.catalog.uncacheTable(name)
                rows.createOrReplaceTempView(name)
        except Exception as e:
            raise SystemExit(f"crm_kpi_spark: {path}: {type(e).__name__}: {e}\n--- statement ---\n{s}") from e
    return df


def file_columns(kpi):
    """The catalog's columns of a KPI that its files hold: all but `as_of`, which is a column
    of the folder names (`as_of=<date>`), as in crm-kpi's own outputs."""
    return [c for c in kpi["columns"] if c["name"] != "as_of"]


def conform(df, kpi):
    """The KPI's columns, in catalog order, cast to the catalog's types."""
    cols = file_columns(kpi)
    names = [c["name"] for c in cols]
    if df.columns != names:
        raise SystemExit(f"crm_kpi_spark: {kpi['name']}: the SQL gives columns {df.columns}, the catalog {names}")
    return df.selectExpr(*[f"CAST(`{c['name']}` AS {spark_type(c['type'])}) AS `{c['name']}`" for c in cols])


def write_kpi(spark, hadoop, df, staging, rel):
    """Writes one KPI as a single Parquet file STAGING/REL/part-0.parquet (through Spark's
    writer: any Hadoop path)."""
    tmp = join(staging, rel + ".tmp")
    df.coalesce(1).write.mode("overwrite").option("compression", "zstd").parquet(tmp)
    parts = [p for p in hadoop.list(tmp) if p.rsplit("/", 1)[-1].startswith("part-") and p.endswith(".parquet")]
    if len(parts) != 1:
        raise SystemExit(f"crm_kpi_spark: {tmp}: expected one part file, found {len(parts)}")
    dst = join(staging, rel)
    hadoop.mkdirs(dst)
    hadoop.rename(parts[0], join(dst, "part-0.parquet"))
    hadoop.delete(tmp)
    return join(dst, "part-0.parquet")


# ---------------------------------------------------------------------------------------------
# What SQL cannot do well: the steps after a KPI's SQL (its `-- post: NAME` line; POST below).


def _km_fit(df, keys, z):
    """The Kaplan-Meier estimate of every group of an event table `df` (columns `keys`, t_days,
    at_risk, events, censored: one row per group and distinct time, in no order), as
    src/stats/km.rs fits it: `df` plus survival S(t) = prod(1 - d/n) (the left-to-right product
    of the factors in time order), ci_low and ci_high, the exponential Greenwood (log-log) 95%
    band with the Greenwood sum g(t) = sum d / (n (n - d)) (a term with n = d counts 0), (1, 1)
    while S = 1 and (0, 0) once S = 0. Running window aggregates (no Python on the executors):
    Spark folds a running frame row by row in time order, so `product` multiplies the factors
    left to right as the Rust loop does (a step without events multiplies by exactly 1) and
    `sum` adds the Greenwood terms in the same order. Divisors that could be 0 are nulled
    first (ANSI mode)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    w = Window.partitionBy(*keys).orderBy("t_days").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    n, d = F.col("at_risk").cast("double"), F.col("events").cast("double")
    fitted = df.select(
        "*",
        F.product(F.lit(1.0) - d / n).over(w).alias("survival"),
        F.sum(F.coalesce(d / F.when(n > d, n * (n - d)), F.lit(0.0))).over(w).alias("_greenwood"),
    )
    s = F.col("survival")
    inside = (s > 0.0) & (s < 1.0)
    ln_s = F.log(F.when(inside, s))
    half = F.lit(z) * F.sqrt("_greenwood") / F.abs(ln_s)
    c = F.log(-ln_s)

    def bound(x):
        return F.when(s >= 1.0, F.lit(1.0)).when(s <= 0.0, F.lit(0.0)).otherwise(F.exp(-F.exp(x)))

    return fitted.select(*df.columns, "survival", bound(c + half).alias("ci_low"), bound(c - half).alias("ci_high"))


def kaplan_meier(spark, df, kpi, bundle):
    """stage_duration_survival: the SQL's event table (stage, dimension, dimension_value, t_days,
    at_risk, events, censored) with each group's survival and 95% band (`_km_fit`)."""
    out = _km_fit(df, kpi["key"][:-1], bundle["z_95"])
    return out.select(*[c["name"] for c in file_columns(kpi)])


def kaplan_meier_median(spark, df, kpi, bundle):
    """stage_duration: the SQL's per-group statistics plus the group's Kaplan-Meier median (the
    first t with S(t) <= 0.5, null if never) and its 95% CI (the first t where the lower /
    upper band is <= 0.5), fitted (`_km_fit`) on the event table stage_km_t of
    views_funnel.sql, as stage_duration_survival is."""
    from pyspark.sql import functions as F

    keys = kpi["key"]
    steps = _km_fit(spark.table("stage_km_t"), keys, bundle["z_95"])

    def first_t(col):
        return F.min(F.when(F.col(col) <= 0.5, F.col("t_days")))

    medians = steps.groupBy(*keys).agg(
        first_t("survival").alias("km_median_days"),
        first_t("ci_low").alias("km_median_ci_low"),
        first_t("ci_high").alias("km_median_ci_high"),
    )
    a, m = df.alias("a"), medians.alias("m")
    out = a.join(m, [F.col(f"a.{k}").eqNullSafe(F.col(f"m.{k}")) for k in keys], "left")
    km = ["km_median_days", "km_median_ci_low", "km_median_ci_high"]
    return out.select(*[F.col(f"a.{c}") for c in df.columns], *[F.col(f"m.{c}") for c in km])


# Predictive CLV (clv_model, clv_predictive): on the RFM rows of views_customers.sql (cust_rfm),
# a BG/NBD and a Gamma-Gamma model fitted by maximum likelihood per clv.segment_by group, as
# crm-kpi fits them (src/stats): Nelder-Mead on the log-parameters from two starts (on an evenly
# spaced subsample of CLV_SUBSAMPLE customers when the group is larger), then Newton steps on
# all customers; standard errors from the central-difference Hessian of log L (step 1e-3 in the
# log-parameters, delta method); no fit (null columns) with too few customers, without
# convergence or with an estimate outside [1e-8, 1e8].

CLV_MONTH_DAYS = 30.4375  # a month of the CLV horizon
CLV_SUBSAMPLE = 10_000
CLV_WALL = 20.0  # log-parameters past this are infeasible: a run-off ends at the wall, a divergence
CLV_LIMIT = 1e8
BG_NAMES, GG_NAMES = ["r", "alpha", "a", "b"], ["p", "q", "v"]


def _compress(*cols):
    """Distinct rows of the columns with their counts: (the distinct rows' columns, weights)."""
    import numpy as np

    rows, w = np.unique(np.column_stack(cols), axis=0, return_counts=True)
    return rows.T, w.astype(np.float64)


def _bg_loglik(x, tx, t):
    """The BG/NBD log-likelihood (FHL 2005 eq. 6) of customers (x, t_x, T) as a function of
    (r, alpha, a, b). Identical histories are merged with a weight, and each term is evaluated
    once per distinct value of the columns it depends on."""
    import numpy as np
    from scipy.special import gammaln

    (x, tx, t), w = _compress(x, tx, t)
    xu, xi = np.unique(x, return_inverse=True)
    tu, ti = np.unique(t, return_inverse=True)
    txu, txi = np.unique(tx, return_inverse=True)
    wx = np.bincount(xi, weights=w, minlength=len(xu))
    rep = x > 0

    def ll(theta):
        r, al, a, b = theta
        common = (
            gammaln(r + xu)
            - gammaln(r)
            + r * np.log(al)
            + gammaln(b + xu)
            - gammaln(b)
            + gammaln(a + b)
            - gammaln(a + b + xu)
        )
        rx = (r + xu)[xi]
        alive = -rx * np.log(al + tu)[ti]
        dropped = (np.log(a) - np.log(b + np.maximum(xu - 1, 0)))[xi] - rx * np.log(al + txu)[txi]
        return float(np.sum(wx * common) + np.sum(w * np.where(rep, np.logaddexp(alive, dropped), alive)))

    return ll


def _gg_loglik(x, m):
    """The Gamma-Gamma log-likelihood (the density of each customer's mean repeat spend m over
    x > 0 purchases) as a function of (p, q, v); terms evaluated once per distinct value."""
    import numpy as np
    from scipy.special import gammaln

    (x, m), w = _compress(x, m)
    xu, xi = np.unique(x, return_inverse=True)
    wx = np.bincount(xi, weights=w, minlength=len(xu))
    ln_xu, ln_m = np.log(xu), np.log(m)
    sum_ln_m, sum_x_ln_m = np.sum(w * ln_m), np.sum(w * x * ln_m)

    def ll(theta):
        p, q, v = theta
        px = p * xu
        per_x = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + px * ln_xu
        return float(np.sum(wx * per_x) + p * sum_x_ln_m - sum_ln_m - np.sum(w * (p * x + q) * np.log(x * m + v)))

    return ll


def _hessian(f, phi, h, f0=None):
    """The central-difference Hessian of f at phi, step h along every axis (f0 = f(phi))."""
    import numpy as np

    k = len(phi)
    e = np.eye(k) * h
    f0 = f(phi) if f0 is None else f0
    out = np.empty((k, k))
    for i in range(k):
        out[i, i] = (f(phi + e[i]) - 2 * f0 + f(phi - e[i])) / (h * h)
        for j in range(i):
            out[i, j] = out[j, i] = (
                f(phi + e[i] + e[j]) - f(phi + e[i] - e[j]) - f(phi - e[i] + e[j]) + f(phi - e[i] - e[j])
            ) / (4 * h * h)
    return out


def _nelder_mead(f, x0, step=0.5, x_tol=1e-9, f_tol=1e-12, max_evals=3000, max_restarts=5):
    """crm-kpi's Nelder-Mead (src/stats/optim.rs): Gao-Han adaptive coefficients, a simplex of
    `step` along each axis, converged when every vertex is within x_tol of the best (each
    coordinate) and within f_tol in value; restarted from the optimum with a fresh simplex
    until a restart no longer improves it; at most max_evals evaluations in all (then not
    converged). (x, value, converged)."""
    import numpy as np

    n = len(x0)
    rho, chi, gamma, sigma = 1.0, 1.0 + 2.0 / n, 0.75 - 0.5 / n, 1.0 - 1.0 / n
    evals = 0

    def ev(x):
        nonlocal evals
        evals += 1
        v = f(x)
        return np.inf if np.isnan(v) else v

    best = np.asarray(x0, dtype=np.float64)
    best_value = ev(best)
    converged = False
    for restart in range(max_restarts + 1):
        start_value = best_value
        simplex = [(best, best_value)] + [(best + step * e, None) for e in np.eye(n)]
        simplex = [(x, v if v is not None else ev(x)) for x, v in simplex]
        converged = False
        while evals < max_evals:
            simplex.sort(key=lambda p: p[1])
            (xb, fb), (xw, fw) = simplex[0], simplex[n]
            x_spread = max(np.max(np.abs(x - xb)) for x, _ in simplex[1:])
            if x_spread <= x_tol and (abs(fw - fb) <= f_tol or not np.isfinite(fw) and not np.isfinite(fb)):
                converged = True
                break
            c = np.sum([x / n for x, _ in simplex[:n]], axis=0)
            xr = c + rho * (c - xw)
            fr = ev(xr)
            if fr < fb:
                xe = c + rho * chi * (c - xw)
                fe = ev(xe)
                simplex[n] = (xe, fe) if fe < fr else (xr, fr)
                continue
            if fr < simplex[n - 1][1]:
                simplex[n] = (xr, fr)
                continue
            xc = c + (rho * gamma if fr < fw else -gamma) * (c - xw)
            fc = ev(xc)
            if fc < min(fr, fw):
                simplex[n] = (xc, fc)
                continue
            simplex = [simplex[0]] + [(xb + sigma * (x - xb), None) for x, _ in simplex[1:]]
            simplex = [(x, v if v is not None else ev(x)) for x, v in simplex]
        simplex.sort(key=lambda p: p[1])
        if simplex[0][1] <= best_value:
            best, best_value = simplex[0]
        if not converged or (restart > 0 and not start_value - best_value > f_tol):
            break
    return best, best_value, converged


def _newton(f, x, h=1e-4, x_tol=1e-9, max_iter=50):
    """crm-kpi's Newton polish (src/stats/optim.rs): central-difference gradient (step h/100)
    and Hessian (step h), the Newton step damped by lambda I until the Hessian is positive
    definite, halved until f decreases; converged when a full step is below x_tol (or, without
    any decrease, below 1e3 max(x_tol, h^2)). (x, value, converged)."""
    import numpy as np

    def ev(y):
        v = f(y)
        return np.inf if np.isnan(v) else v

    n = len(x)
    fx = ev(x)
    for _ in range(max_iter):
        if not np.isfinite(fx):
            break
        e = np.eye(n) * (h / 100)
        g = np.array([(ev(x + d) - ev(x - d)) / (2 * h / 100) for d in e])
        hm = _hessian(ev, x, h, fx)
        if not (np.all(np.isfinite(g)) and np.all(np.isfinite(hm))):
            break
        scale, lam, step = max(np.max(np.abs(np.diag(hm))), 1e-12), 0.0, None
        while step is None:
            inv = _inverse_spd(hm + lam * np.eye(n))
            if inv is not None:
                step = -(inv * g).sum(axis=1)
                break
            lam = 1e-6 * scale if lam == 0 else lam * 10
            if lam > 1e12 * scale:
                break
        if step is None:
            break
        full = np.max(np.abs(step))
        if full < x_tol:
            return x, fx, True
        for t in 0.5 ** np.arange(40):
            fy = ev(x + t * step)
            if fy < fx:
                x, fx = x + t * step, fy
                break
        else:
            return x, fx, bool(full < 1e3 * max(x_tol, h * h))
    return x, fx, False


def _inverse_spd(m):
    """The inverse of a symmetric positive-definite matrix, or None when it is not one."""
    import numpy as np

    if not np.all(np.isfinite(m)):
        return None
    try:
        np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        return None
    return np.linalg.inv(m)


def _mle(loglik, data, starts, names):
    """A model's fit on `data` (columns of its log-likelihood's arguments), as crm-kpi makes it:
    Nelder-Mead on the mean negative log-likelihood in the log-parameters (past +-CLV_WALL:
    infeasible) from each start, on an evenly spaced subsample when there are more than
    CLV_SUBSAMPLE customers, the best optimum kept; then Newton steps on all customers (if they
    fail, the optimum itself, or a Nelder-Mead search on all customers from it when it came
    from a subsample). A dict of estimates, std_err and log_likelihood, or None: an estimate
    outside [1/CLV_LIMIT, CLV_LIMIT], no convergence or a log-likelihood that is not finite."""
    import numpy as np

    n = len(data[0])
    ll = loglik(*data)
    sub = None
    if n > CLV_SUBSAMPLE:
        every = (np.arange(CLV_SUBSAMPLE) * (n / CLV_SUBSAMPLE)).astype(np.int64)
        sub = loglik(*(c[every] for c in data))

    def objective(fn, size):
        def f(phi):
            if np.any(np.abs(phi) > CLV_WALL):
                return np.inf
            return -fn(np.exp(phi)) / size

        return f

    f = objective(ll, n)
    first = objective(sub, CLV_SUBSAMPLE) if sub is not None else f
    phi, value, ok = min((_nelder_mead(first, np.log(s)) for s in starts), key=lambda r: r[1])
    if ok:
        polished = _newton(f, phi)
        if polished[2] and polished[1] <= max(value, f(phi)):
            phi = polished[0]
        elif sub is not None:
            phi, _, ok = _nelder_mead(f, phi, step=0.1)
    theta = np.exp(phi)
    if np.any((theta < 1 / CLV_LIMIT) | (theta > CLV_LIMIT)) or not ok:
        return None
    value = ll(theta)
    if not np.isfinite(value):
        return None
    cov = _inverse_spd(_hessian(lambda p: -ll(np.exp(p)), phi, 1e-3))
    se = (
        [None] * len(names)
        if cov is None
        else [th * np.sqrt(c) if c > 0 else None for th, c in zip(theta, np.diag(cov), strict=True)]
    )
    return {
        "estimates": [float(v) for v in theta],
        "std_err": [None if v is None else float(v) for v in se],
        "log_likelihood": value,
    }


def _clv_fit_group(x, tx, t, m):
    """Both fits of one group: ({model: fit or None}, {model: n_customers})."""
    import numpy as np

    bg = None
    if np.count_nonzero(x > 0) >= 4:
        alpha0 = float(t.sum() / x.sum()) if x.sum() > 0 and t.sum() > 0 else 1.0
        bg = _mle(_bg_loglik, (x, tx, t), [[1.0, alpha0, 1.0, 1.0], [0.1, 0.1 * alpha0, 0.5, 5.0]], BG_NAMES)
    use = (x > 0) & (m > 0) & np.isfinite(m)
    gg = None
    if np.count_nonzero(use) >= 3:
        mean = float(m[use].mean())
        gg = _mle(_gg_loglik, (x[use], m[use]), [[1.0, 2.0, mean], [5.0, 5.0, mean]], GG_NAMES)
    return {"bg_nbd": bg, "gamma_gamma": gg}, {"bg_nbd": len(x), "gamma_gamma": int(np.count_nonzero(use))}


def _clv_fits(df, bundle):
    """The RFM rows (pandas, by account_id), their columns as float arrays (x, t_x, T, m with
    NaN for null), and per segment (None: the null group) the rows' indices and both fits.
    Once per run: clv_model's and clv_predictive's SQL both read cust_rfm, so the second KPI
    reuses the first's."""
    if "_clv_fits" not in bundle:
        import numpy as np

        rfm = df.toPandas().sort_values("account_id", kind="stable").reset_index(drop=True)
        cols = tuple(
            rfm[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in ("frequency", "recency", "t", "monetary_value")
        )
        groups = rfm.groupby("segment", dropna=False, sort=False).indices
        if not groups and bundle["config"]["clv"]["segment_by"] == "none":
            groups = {"all": np.arange(0)}
        fits = {
            (seg if isinstance(seg, str) else None): (idx, *_clv_fit_group(*(c[idx] for c in cols)))
            for seg, idx in groups.items()
        }
        bundle["_clv_fits"] = (rfm, cols, fits)
    return bundle["_clv_fits"]


def _with_arrow(spark, build):
    """`build()` with Arrow conversion on (pandas to Spark in bulk; NaN becomes null)."""
    key = "spark.sql.execution.arrow.pyspark.enabled"
    old = spark.conf.get(key, "false")
    spark.conf.set(key, "true")
    try:
        return build()
    finally:
        spark.conf.set(key, old)


def clv_model(spark, df, kpi, bundle):
    """clv_model: per segment, the BG/NBD (r, alpha, a, b) and Gamma-Gamma (p, q, v) estimates,
    standard errors, log-likelihood and the customers each fit used (`_clv_fits`); a model
    without a fit keeps its rows with null value, std_err and log_likelihood."""
    _, _, fits = _with_arrow(spark, lambda: _clv_fits(df, bundle))
    rows = []
    for seg, (_, fit, n) in fits.items():
        for model, names in (("bg_nbd", BG_NAMES), ("gamma_gamma", GG_NAMES)):
            f = fit[model] or {"estimates": [None] * len(names), "std_err": [None] * len(names)}
            for name, value, se in zip(names, f["estimates"], f["std_err"], strict=True):
                rows.append((model, seg, name, value, se, f.get("log_likelihood"), n[model]))
    return spark.createDataFrame(rows, conform_ddl(kpi))


def _expected_if_alive(bg, x, t, h):
    """E[purchases in (t, t + h] | alive at t, x repeat purchases] (FHL 2005 eq. 10 without
    P(alive)), elementwise, by Euler's transformation as crm-kpi evaluates it:
    c [-expm1((a-1) ln(1-z)) / (a-1) - (1-z)^(a-1) S], c = a+b+x-1, z = h / (alpha+t+h) and
    S = sum_k>=1 (c-r-x)_k (a)_(k-1) z^k / ((c)_k k!), summed until the tail is below 1e-17 of
    the sum (terms rescaled by 2^-600 past 2^600); NaN when it does not converge."""
    import numpy as np

    r, al, a, b = bg
    c = a + b + x - 1.0
    ap, d = a + b - 1.0 - r, a - 1.0
    ln_w = -np.log1p(h / (al + t))
    z = h / (al + t + h)
    n = len(z)
    total, scale = np.zeros(n), np.zeros(n)
    live = np.arange(n)
    s, term, zz, cc, sc = np.zeros(n), ap * z / c, z, c, np.zeros(n)
    big = 2.0**600
    k = 1.0
    while live.size:
        s = s + term
        ratio = (ap + k) * (a + k - 1.0) * zz / ((cc + k) * (k + 1.0))
        term = term * ratio
        k += 1.0
        over = np.abs(s) > big
        s, term, sc = np.where(over, s / big, s), np.where(over, term / big, term), np.where(over, sc + np.log(big), sc)
        rho = np.maximum(ratio, zz)
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = np.abs(term) * rho / (1.0 - rho)
        done = (k > -ap + 1.0) & (ratio < 1.0) & ((tail <= 1e-17 * np.abs(s)) | (term == 0))
        bad = ~np.isfinite(s) | (k > 5e6)
        total[live[done]], scale[live[done]] = s[done], sc[done]
        total[live[bad & ~done]] = np.nan
        keep = ~(done | bad)
        live, s, term, zz, cc, sc = live[keep], s[keep], term[keep], zz[keep], cc[keep], sc[keep]
    first = -ln_w if d == 0 else -np.expm1(d * ln_w) / d
    with np.errstate(divide="ignore"):
        second = np.where(total == 0, 0.0, np.sign(total) * np.exp(d * ln_w + np.log(np.abs(total)) + scale))
    return np.where(h > 0, c * (first - second), 0.0)


def clv_predictive(spark, df, kpi, bundle):
    """clv_predictive: each customer's RFM with P(alive), expected purchases over the horizon,
    the Gamma-Gamma expected spend per purchase and the discounted CLV, from its segment's fits
    (`_clv_fits`); null where the segment has no fit or a value is not finite."""
    import numpy as np

    cfg = bundle["config"]["clv"]
    months, rate = int(cfg["horizon_months"]), float(cfg["monthly_discount_rate"])
    month = CLV_MONTH_DAYS / (7.0 if cfg["time_unit"] == "weeks" else 1.0)
    rfm, (x, tx, t, m), fits = _with_arrow(spark, lambda: _clv_fits(df, bundle))
    p_alive, expected, avg, clv = (np.full(len(rfm), np.nan) for _ in range(4))
    for rows, fit, _ in fits.values():
        gg = fit["gamma_gamma"]
        if gg is not None and gg["estimates"][1] > 1:
            p, q, v = gg["estimates"]
            xs = x[rows]
            avg[rows] = p * (v + xs * np.where(xs == 0, 0.0, np.nan_to_num(m[rows]))) / (p * xs + q - 1)
        bg = fit["bg_nbd"]
        if bg is None or not rows.size:
            continue
        r, al, a, b = bg["estimates"]
        xs, txs, ts = x[rows], tx[rows], t[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            ln_odds = np.where(
                xs > 0, np.log(a) - np.log(b + xs - 1) + (r + xs) * (np.log(al + ts) - np.log(al + txs)), -np.inf
            )
        pa = np.exp(-np.logaddexp(0.0, ln_odds))
        # E[X] once per distinct (x, T) and month end of the horizon.
        keys, inv = np.unique(np.column_stack([xs, ts]), axis=0, return_inverse=True)
        hs = np.arange(1, months + 1) * month
        e = (
            _expected_if_alive(
                bg["estimates"], np.repeat(keys[:, 0], months), np.repeat(keys[:, 1], months), np.tile(hs, len(keys))
            ).reshape(len(keys), months)[inv.ravel()]
            * pa[:, None]
        )
        steps = np.diff(np.column_stack([np.zeros(len(rows)), e]), axis=1)
        disc = np.sum(steps * (1.0 + rate) ** -np.arange(1, months + 1, dtype=np.float64), axis=1)
        p_alive[rows] = pa
        expected[rows] = e[:, -1] if months else 0.0
        clv[rows] = disc * avg[rows]
    out = rfm[["account_id", "frequency", "recency", "t", "monetary_value"]].copy()
    for name, v in (("p_alive", p_alive), ("expected_purchases", expected), ("expected_avg_value", avg), ("clv", clv)):
        out[name] = np.where(np.isfinite(v), v, np.nan)
    return _with_arrow(spark, lambda: spark.createDataFrame(out, conform_ddl(kpi)))


def conform_ddl(kpi):
    return ", ".join(f"`{c['name']}` {spark_type(c['type'])}" for c in file_columns(kpi))


POST = {
    "kaplan_meier": kaplan_meier,
    "kaplan_meier_median": kaplan_meier_median,
    "clv_model": clv_model,
    "clv_predictive": clv_predictive,
}


# ---------------------------------------------------------------------------------------------


def utc_now():
    return datetime.datetime.now(datetime.UTC)


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def main(argv=None):
    p = argparse.ArgumentParser(prog="crm_kpi_spark.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--store", required=True, help="the crm-kpi store (a Hadoop path)")
    p.add_argument("--out", required=True, help="the output folder (a Hadoop path)")
    p.add_argument("--kpi", default="", help="only these KPIs (comma-separated)")
    p.add_argument("--bundle", default=BUNDLE, help="the bundle folder (default: this file's)")
    p.add_argument("--master", help="Spark master when not launched by spark-submit (e.g. local[2])")
    a = p.parse_args(argv)
    with open(os.path.join(a.bundle, "bundle.json")) as f:
        bundle = json.load(f)
    catalog = {k["name"]: k for k in bundle["catalog"]}
    wanted = [k for k in a.kpi.split(",") if k]
    unknown = [k for k in wanted if k not in catalog]
    if unknown:
        raise SystemExit(f"crm_kpi_spark: unknown KPI {', '.join(unknown)}; the bundle has {', '.join(catalog)}")

    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("crm-kpi")
    if a.master:
        builder = builder.master(a.master)
    for k, v in bundle["spark_conf"].items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    # The settings the SQL is written for, whatever the cluster's defaults: periods cut in the
    # configured timezone, timestamps written as microseconds (not INT96), ANSI errors on.
    for k, v in bundle["spark_conf"].items():
        if not k.startswith("spark.ui."):
            spark.conf.set(k, v)
    # On one machine, as many shuffle partitions as cores unless the user set them (Spark's
    # default of 200 makes a local run about 3x slower on these small shuffles).
    conf = spark.sparkContext.getConf()
    if conf.get("spark.master", "").startswith("local") and not conf.contains("spark.sql.shuffle.partitions"):
        spark.conf.set("spark.sql.shuffle.partitions", str(spark.sparkContext.defaultParallelism))
    hadoop = Hadoop(spark)

    started = utc_now()
    t0 = time.perf_counter()
    run_id = f"{started.strftime('%Y%m%dT%H%M%S')}.{started.microsecond // 1000:03d}Z-spark-{os.getpid()}"
    manifest = register_store(spark, hadoop, a.store, bundle)
    staging = join(a.out, f".staging-{run_id}")
    written = []
    try:
        for step in bundle["steps"]:
            path = os.path.join(a.bundle, step["sql"])
            with open(path) as f:
                text = f.read()
            kpi_name = step.get("kpi")
            if kpi_name is None:
                run_sql(spark, step["sql"], text)
                continue
            if wanted and kpi_name not in wanted:
                continue
            kpi = catalog[kpi_name]
            k0 = time.perf_counter()
            df = run_sql(spark, step["sql"], text)
            if step.get("post"):
                df = POST[step["post"]](spark, df, kpi, bundle)
            df = conform(df, kpi)
            rel = f"{kpi_name}/grain={bundle['grain']}/as_of={bundle['as_of']}"
            rows = spark.read.parquet(write_kpi(spark, hadoop, df, staging, rel)).count()
            ms = int((time.perf_counter() - k0) * 1000)
            written.append((kpi, rel, rows, ms))
            print(f"crm_kpi_spark: {kpi_name}: {rows} rows in {ms} ms", file=sys.stderr, flush=True)
        # Publish: each KPI's partition replaces the one in OUT.
        for _, rel, _, _ in written:
            dst = join(a.out, rel)
            if hadoop.exists(dst):
                hadoop.delete(dst)
            hadoop.mkdirs(dst.rsplit("/", 1)[0])
            hadoop.rename(join(staging, rel), dst)
            hadoop.write_text(join(dst, "_SUCCESS"), "")
    finally:
        if hadoop.exists(staging):
            hadoop.delete(staging)
    finished = utc_now()
    total_ms = int((time.perf_counter() - t0) * 1000)
    run = {
        "run_id": run_id,
        "started_at": iso(started),
        "store": a.store,
        "store_generation": manifest.get("generation"),
        "as_of": bundle["as_of"],
        "as_of_instant": bundle["as_of_instant"],
        "grain": bundle["grain"],
        "config_hash": bundle["config_hash"],
        "engine": "spark",
        "spark_version": spark.version,
        "collect_ms": total_ms,
        "total_ms": total_ms,
        "finished_at": iso(finished),
        "status": "succeeded",
        "kpis": [
            {
                "name": kpi["name"],
                "version": kpi["version"],
                "rows": rows,
                "path": join(a.out, rel, "part-0.parquet"),
                "plan_ms": 0,
                "write_ms": ms,
            }
            for kpi, rel, rows, ms in written
        ],
    }
    text = json.dumps(run, indent=2)
    hadoop.write_text(join(a.out, "_runs", f"{run_id}.json"), text)
    hadoop.write_text(join(a.out, "_runs", "latest.json"), text)
    print(
        f"crm_kpi_spark: {len(written)} KPIs as of {bundle['as_of']} written to {a.out} in {total_ms} ms",
        file=sys.stderr,
    )
    spark.stop()


if __name__ == "__main__":
    main()
