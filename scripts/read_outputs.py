"""Reads crm-kpi's outputs and store as warehouse tools do, and runs the README's snippets.

Usage: python scripts/read_outputs.py WORK README
WORK holds `data/store` (written by this build from `generate --scale tiny`) and `out/` (a run
of it as of 2026-06-30); `crm-kpi` is on
PATH. Checks, for every KPI folder of the run manifest, that pandas, pyarrow.dataset, polars and
DuckDB read it with no options, with the manifest's row count, `grain` and `as_of` once each,
no unsigned integers, no string_view, and the crm_kpi.* metadata visible to pq.read_schema;
then runs every snippet between the README's `<!-- snippets: ... -->` markers (Python blocks in
one namespace, SQL blocks in DuckDB), Spark's only when pyspark is importable. Exits 1 on any
failure, naming it.
"""

import json
import os
import re
import sys

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def check_outputs(out):
    manifest = json.load(open(os.path.join(out, "_runs", "latest.json")))
    assert manifest["status"] == "succeeded", manifest["status"]
    problems = []
    for k in manifest["kpis"]:
        name, rows = k["name"], k["rows"]
        d = os.path.join(out, name)
        part = os.path.join(d, f"grain={manifest['grain']}", f"as_of={manifest['as_of']}")
        if not os.path.exists(os.path.join(part, "_SUCCESS")):
            problems.append(f"{name}: no _SUCCESS marker")
        f = os.path.join(part, "part-0.parquet")
        schema = pq.read_schema(f)
        meta = schema.metadata or {}
        if meta.get(b"crm_kpi.kpi") != name.encode() or b"crm_kpi.key" not in meta:
            problems.append(f"{name}: crm_kpi metadata not visible to pq.read_schema")
        for field in schema:
            t = field.type
            if pa.types.is_unsigned_integer(t) or pa.types.is_string_view(t) or pa.types.is_large_string(t):
                problems.append(f"{name}.{field.name}: {t}")
        if "as_of" in schema.names or "grain" in schema.names:
            problems.append(f"{name}: the file repeats a partition column")
        got = {
            "pandas": lambda d=d: pd.read_parquet(d),
            "pyarrow.dataset": lambda d=d: ds.dataset(d, partitioning="hive").to_table(),
            "polars": lambda d=d: pl.read_parquet(f"{d}/**/*.parquet", hive_partitioning=True),
            "duckdb": lambda d=d: duckdb.sql(f"SELECT * FROM read_parquet('{d}/*/*/*.parquet')").df(),
        }
        for tool, read in got.items():
            try:
                t = read()
                n = len(t)
                cols = t.column_names if isinstance(t, pa.Table) else list(t.columns)
            except Exception as e:  # noqa: BLE001 (reported, with the tool's message)
                problems.append(f"{name}: {tool} cannot read the folder: {e}")
                continue
            if n != rows:
                problems.append(f"{name}: {tool} read {n} rows, the manifest says {rows}")
            for c in ("as_of", "grain"):
                if cols.count(c) != 1:
                    problems.append(f"{name}: {tool} gives {cols.count(c)} `{c}` columns")
        as_of_type = pl.read_parquet(f"{d}/**/*.parquet", hive_partitioning=True).schema["as_of"]
        if as_of_type != pl.Date:
            problems.append(f"{name}: polars reads as_of as {as_of_type}")
    print(f"outputs: {len(manifest['kpis'])} KPI folders read by pandas, pyarrow, polars and DuckDB")
    return problems


def check_store(store):
    """Every current store file (`crm-kpi files --json`) reads in pyarrow with plain types."""
    import subprocess

    listing = subprocess.run(
        ["crm-kpi", "files", "--store", store, "--json"], capture_output=True, text=True, check=True
    ).stdout
    problems, n = [], 0
    for table, files in json.loads(listing).items():
        for f in files:
            n += 1
            for field in pq.read_schema(f):
                t = field.type
                if pa.types.is_string_view(t) or pa.types.is_large_string(t) or pa.types.is_binary_view(t):
                    problems.append(f"store {table}.{field.name}: {t} in {f}")
    print(f"store: {n} files read by pyarrow")
    return problems


def snippets(readme):
    """(label, language, code) of every fenced block between the snippet markers."""
    text = open(readme).read()
    out = []
    for m in re.finditer(r"<!-- snippets: ([\w-]+).*?-->(.*?)<!-- end snippets -->", text, re.S):
        for b in re.finditer(r"```(\w+)\n(.*?)```", m.group(2), re.S):
            out.append((m.group(1), b.group(1), b.group(2)))
    return out


def spark_session():
    """A local[1] Spark session, or None without pyspark."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def check_spark(spark, out):
    """Spark reads every KPI folder with no options: the manifest's rows, as_of a DateType once."""
    manifest = json.load(open(os.path.join(out, "_runs", "latest.json")))
    problems = []
    for k in manifest["kpis"]:
        df = spark.read.parquet(os.path.join(out, k["name"]))
        n = df.count()
        if n != k["rows"]:
            problems.append(f"{k['name']}: Spark read {n} rows, the manifest says {k['rows']}")
        types = dict(df.dtypes)
        if [c for c in df.columns if c == "as_of"] != ["as_of"] or types.get("as_of") != "date":
            problems.append(f"{k['name']}: Spark sees as_of as {types.get('as_of')}, {df.columns.count('as_of')} times")
    print(f"outputs: {len(manifest['kpis'])} KPI folders read by Spark {spark.version}")
    return problems


def run_snippets(readme, spark):
    problems = []
    ns = {"spark": spark}
    ran = skipped = 0
    for label, lang, code in snippets(readme):
        if "spark." in code and spark is None:
            skipped += 1
            continue
        try:
            if lang == "python":
                exec(compile(code, f"README {label}", "exec"), ns)  # noqa: S102 (the README's own snippets)
                if "spark." in code:
                    ns["wr"].count() if "wr" in ns else None
            elif lang == "sql":
                rows = duckdb.sql(code).fetchall()
                if not rows:
                    problems.append(f"README {label}: the SQL snippet returned no rows")
            ran += 1
        except Exception as e:  # noqa: BLE001 (reported)
            problems.append(f"README {label} {lang} snippet failed: {e}\n{code}")
    print(f"README snippets: {ran} run" + (f", {skipped} skipped (Spark: pyspark not installed)" if skipped else ""))
    return problems


def main():
    work, readme = sys.argv[1], os.path.abspath(sys.argv[2])
    os.chdir(work)
    spark = spark_session()
    problems = check_outputs("out") + check_store("data/store")
    if spark is not None:
        problems += check_spark(spark, "out")
    problems += run_snippets(readme, spark)
    for p in problems:
        print("FAIL", p)
    print("read-outputs:", "FAILED" if problems else "all read")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
