"""Cross-check crm-kpi's predictive CLV against the Python `lifetimes` package on the CDNOW
sample shipped in tests/data/cdnow (see its README).

Usage (from the repository root):
    python -m reference.clv_lifetimes_check [CRM_KPI_BINARY] [--config FILE]
(binary default: $CRM_KPI_BIN, else target/release/crm-kpi; config default: $CRM_KPI_CONFIG,
else the repository's crm-kpi.toml, passed to crm-kpi too).

Needs a Python with lifetimes 0.11.3 and its era's stack, which does not install next to the
references' (reference/requirements-lifetimes.txt pins it):
    scripts/python-venv.sh ~/.cache/crm-kpi-lifetimes-venv -r reference/requirements-lifetimes.txt
    ~/.cache/crm-kpi-lifetimes-venv/bin/python -m reference.clv_lifetimes_check

It ingests the CDNOW lines as orders into a temporary store, runs clv_model and clv_predictive as
of 1997-09-30 (the config's [clv] horizon_months and monthly_discount_rate; time_unit must be
weeks and segment_by none, as in the publication), fits lifetimes' BetaGeoFitter and
GammaGammaFitter on the same RFM summary, and compares:
- the RFM: lifetimes' summary_data_from_transaction_data with freq="D", divided by 7 (its
  freq="W" counts weekly periods instead, which does not reproduce Hardie's T = 38.86);
- estimates (to 1e-5) and standard errors (to 1e-4), and the published values to 3 significant
  figures;
- per customer: P(alive), expected purchases over the horizon's months of 30.4375/7 weeks, expected average
  order value and the discounted CLV (lifetimes' predict and conditional_expected_average_profit,
  summed like crm-kpi's definition), to 1e-5. lifetimes' own customer_lifetime_value uses months
  of 4.345 weeks; its difference is printed for information only.
Exits 1 on any failure.
"""

import argparse
import io
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

from .common import CLV_MONTH_DAYS, REPO, load_config

ROOT = str(REPO)
AS_OF = "1997-09-30"
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def sig3(v):
    return float(f"{v:.3g}")


def crm(binary, args):
    return subprocess.run([binary] + args, check=True, capture_output=True, text=True).stdout


def main():
    p = argparse.ArgumentParser(prog="python -m reference.clv_lifetimes_check", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "binary", nargs="?", default=os.environ.get("CRM_KPI_BIN", os.path.join(ROOT, "target/release/crm-kpi"))
    )
    p.add_argument("--config", help="crm-kpi.toml (default: $CRM_KPI_CONFIG, else the repository's)")
    a = p.parse_args()
    binary = a.binary
    cfg = load_config(a.config)
    if cfg.clv_time_unit != "weeks" or cfg.clv_segment_by != "none":
        sys.exit(f"{cfg.path}: [clv] time_unit must be weeks and segment_by none for this check (the publication's)")
    u = CLV_MONTH_DAYS / 7  # one month in weeks
    horizon, rate = cfg.clv_horizon_months, cfg.clv_monthly_discount_rate
    config = ["--config", cfg.path]
    lines = pd.read_csv(
        os.path.join(ROOT, "tests/data/cdnow/CDNOW_sample.txt"),
        sep=r"\s+",
        header=None,
        names=["id", "master_id", "date", "cds", "dollars"],
        dtype={"date": str},
    )
    lines["date"] = pd.to_datetime(lines["date"], format="%Y%m%d")
    failures = []

    def check(name, got, want, rel):
        err = abs(got - want) / max(abs(want), 1e-300)
        status = "ok" if err <= rel else "FAIL"
        print(f"{name:<40} crm-kpi {got:<22.12g} lifetimes {want:<22.12g} rel {err:.1e} {status}")
        if err > rel:
            failures.append(name)

    with tempfile.TemporaryDirectory() as tmp:
        orders = pd.DataFrame(
            {
                "order_id": [f"c{i}" for i in range(len(lines))],
                "account_id": lines["master_id"].astype(str),
                "ordered_at": lines["date"].dt.strftime("%Y-%m-%d"),
                "amount": lines["dollars"],
            }
        )
        path = os.path.join(tmp, "orders.csv")
        orders.to_csv(path, index=False)
        crm(binary, [*config, "ingest", "--store", f"{tmp}/store", path])

        def show(kpi):
            args = [*config, "show", kpi, "--store", f"{tmp}/store", "--as-of", AS_OF, "--format", "csv"]
            return pd.read_csv(io.StringIO(crm(binary, args)), dtype={"account_id": str})

        model = show("clv_model")
        pred = show("clv_predictive").set_index("account_id")

    # lifetimes' RFM: days, then weeks = days / 7.
    s = summary_data_from_transaction_data(
        lines, "master_id", "date", monetary_value_col="dollars", observation_period_end=AS_OF, freq="D"
    )
    s.index = s.index.astype(str)
    s[["recency", "T"]] = s[["recency", "T"]] / 7
    s = s.loc[pred.index]
    for col, mine in [("frequency", "frequency"), ("recency", "recency"), ("T", "t")]:
        check(f"RFM {col} (max over customers)", float(np.max(np.abs(pred[mine] - s[col]))) + 1.0, 1.0, 1e-12)
    repeat = s["frequency"] > 0
    check(
        "RFM monetary_value (max over repeaters)",
        float(np.max(np.abs(pred.loc[repeat, "monetary_value"] - s.loc[repeat, "monetary_value"]))) + 1.0,
        1.0,
        1e-9,
    )

    bg = BetaGeoFitter().fit(s["frequency"], s["recency"], s["T"])
    gg = GammaGammaFitter().fit(s.loc[repeat, "frequency"], s.loc[repeat, "monetary_value"])
    value = {(r.model, r.param): (r.value, r.std_err, r.log_likelihood, r.n_customers) for r in model.itertuples()}
    for fitter, name in [(bg, "bg_nbd"), (gg, "gamma_gamma")]:
        se = fitter.summary["se(coef)"]
        for p, v in fitter.params_.items():
            got = value[(name, p)]
            check(f"{name} {p}", got[0], v, 1e-5)
            check(f"{name} se({p})", got[1], se[p], 1e-4)
            if sig3(got[0]) != sig3(PUBLISHED[p]):
                print(f"{name} {p}: {got[0]} is not the published {PUBLISHED[p]} to 3 significant figures FAIL")
                failures.append(f"published {p}")
    print(
        f"bg_nbd log-likelihood {value[('bg_nbd', 'r')][2]:.4f} (published -9582.4), "
        f"n_customers {value[('bg_nbd', 'r')][3]}, gamma_gamma n_customers {value[('gamma_gamma', 'p')][3]}"
    )

    x, tx, T = s["frequency"], s["recency"], s["T"]
    m = s["monetary_value"].where(repeat, 0.0)
    p_alive = bg.conditional_probability_alive(x, tx, T)
    e = [bg.predict(i * u, x, tx, T) if i else 0 * x for i in range(horizon + 1)]
    avg = gg.conditional_expected_average_profit(x, m)
    clv = sum((e[i] - e[i - 1]) * avg / (1 + rate) ** i for i in range(1, horizon + 1))
    for col, ref in [
        ("p_alive", p_alive),
        ("expected_purchases", e[horizon]),
        ("expected_avg_value", avg),
        ("clv", clv),
    ]:
        err = np.abs(pred[col].to_numpy() - np.asarray(ref)) / np.maximum(np.abs(np.asarray(ref)), 1e-12)
        worst = int(np.argmax(err))
        check(
            f"{col} (worst customer {pred.index[worst]})",
            float(pred[col].iloc[worst]),
            float(np.asarray(ref)[worst]),
            1e-5,
        )
    own = gg.customer_lifetime_value(bg, x, tx, T, m, time=horizon, discount_rate=rate, freq="W")
    print(
        f"lifetimes' customer_lifetime_value (months of 4.345 weeks): total {own.sum():.2f} vs crm-kpi "
        f"{pred['clv'].sum():.2f} (months of {u:.6f} weeks)"
    )
    if failures:
        print(f"{len(failures)} failure(s): {', '.join(failures)}")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
