"""The pandas engine of the comparison (benches/compare/run.sh): every KPI of the registry over
the same store files, each written to OUT/<kpi>.parquet. Timed as one process.

Usage: python -m reference.pandas STORE OUT AS_OF [--config FILE]
"""

import argparse
import os

from ..common import load_config
from . import KPIS, Ctx


def main():
    p = argparse.ArgumentParser(prog="python -m reference.pandas", description=__doc__.split("\n\n")[0])
    p.add_argument("store")
    p.add_argument("out")
    p.add_argument("as_of")
    p.add_argument("--config", help="crm-kpi.toml (default: $CRM_KPI_CONFIG, else the repository's)")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    ctx = Ctx(a.store, a.as_of, load_config(a.config))
    for name, fn in KPIS.items():
        df = fn(ctx)
        df.insert(0, "as_of", ctx.as_of_date)
        df.to_parquet(f"{a.out}/{name}.parquet", index=False)


if __name__ == "__main__":
    main()
