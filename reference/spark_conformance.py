"""The Spark bundle's outputs against crm-kpi's own, KPI by KPI (scripts/spark-conformance.sh).

Usage: python -m reference.spark_conformance CRM_OUT SPARK_OUT AS_OF GRAIN [--kpi A,B] [--catalog BIN|FILE]

For every KPI of the catalog (or of --kpi): the Parquet schema of the Spark file equals crm-kpi's
(column names, order and Arrow types; metadata aside), and its rows equal crm-kpi's key by key
with the cross-check's comparison (counts and text exactly, floats to 1e-9 relative; the CLV
model fits within common.TOLERANCES, since scipy's optimizer and crm-kpi's agree only to the
flatness of the likelihood). Then a self-test: one value of the Spark output perturbed must be
reported as a mismatch. Exit 1 on any difference (or if the perturbation goes unseen).
"""

import argparse
import copy
import os
import sys

import duckdb
import pyarrow.parquet as pq

from .common import (
    compare,
    fetch,
    is_float_type,
    load_catalog,
    output_path,
    output_relation,
    value_columns,
    within_tolerance,
)


def schema_problems(kpi, mine_path, spark_path):
    mine = pq.read_schema(mine_path).remove_metadata()
    theirs = pq.read_schema(spark_path).remove_metadata()
    if mine.names != theirs.names:
        return [f"  {kpi}: columns {theirs.names} in Spark's file, {mine.names} in crm-kpi's"]
    return [
        f"  {kpi}: column {a.name} is {b.type} in Spark's file, {a.type} in crm-kpi's"
        for a, b in zip(mine, theirs, strict=True)
        if a.type != b.type
    ]


def perturbed(spec, ref):
    """`ref` with one value changed (the first non-null number of a value column), or None."""
    cols, rows = ref
    types = {c["name"]: c["type"] for c in spec["columns"]}
    for i, r in enumerate(rows):
        for c in value_columns(spec):
            v = r.get(c)
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, (int, float)):
                rows2 = copy.deepcopy(rows)
                rows2[i][c] = v * (1 + 1e-6) + (1e-6 if is_float_type(types.get(c)) else 1)
                return cols, rows2
    return None


def main():
    p = argparse.ArgumentParser(prog="python -m reference.spark_conformance", description=__doc__.split("\n\n")[0])
    p.add_argument("crm_out")
    p.add_argument("spark_out")
    p.add_argument("as_of")
    p.add_argument("grain")
    p.add_argument("--kpi", default="")
    p.add_argument("--catalog", help="crm-kpi binary or `list --json` file (default: $CRM_KPI_CATALOG / $CRM_KPI_BIN)")
    a = p.parse_args()
    catalog = load_catalog(a.catalog)
    wanted = [k for k in a.kpi.split(",") if k]
    specs = [k for k in catalog if not wanted or k["name"] in wanted]
    con = duckdb.connect()
    bad = 0
    self_test = None
    for spec in specs:
        kpi = spec["name"]
        mine_path = output_path(a.crm_out, kpi, a.as_of, a.grain)
        spark_path = output_path(a.spark_out, kpi, a.as_of, a.grain)
        missing = [x for x in (mine_path, spark_path) if not os.path.exists(x)]
        if missing:
            print(f"{kpi:<24} no output at {', '.join(missing)}")
            bad += 1
            continue
        problems = schema_problems(kpi, mine_path, spark_path)
        for line in problems:
            print(line)
        bad += len(problems)
        ref = fetch(con, f"SELECT * FROM {output_relation(a.spark_out, kpi, a.as_of, a.grain)}")
        ref = within_tolerance(con, spec, ref, a.crm_out, a.as_of, "spark", a.grain)
        bad += compare(con, spec, ref, a.crm_out, a.as_of, "spark", grain=a.grain)
        if self_test is None:
            changed = perturbed(spec, ref)
            if changed is not None:
                self_test = (spec, changed)
    if self_test is not None:
        spec, changed = self_test
        print(f"self-test: one value of {spec['name']} perturbed:")
        seen = compare(con, spec, changed, a.crm_out, a.as_of, "spark (perturbed)", grain=a.grain)
        if seen == 0:
            print("self-test FAILED: a perturbed value was not reported")
            bad += 1
    print(f"spark conformance: {len(specs)} KPIs, {bad} mismatches")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
