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
import math
import os
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


def run_sql(spark, path, text):
    """Runs every statement of a SQL file; returns the DataFrame of the last one."""
    df = None
    for s in statements(text):
        try:
            df = spark.sql(s)
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
# What SQL cannot do well: the steps after a KPI's SQL (`post` in the registry).


def kaplan_meier(spark, df, kpi, bundle):
    """stage_duration_survival: from the SQL's step table (group keys, t, at_risk, events,
    censored; one row per group and distinct duration, in no order), the product-limit
    estimate S(t) = prod(1 - d/n), Greenwood's variance, the log-log 95% band and each
    group's median (the first t where S <= 0.5), as the embedded engine computes them."""
    import numpy as np
    import pandas as pd

    keys, out_cols = kpi["key"][:-1], [c["name"] for c in file_columns(kpi)]
    z = bundle["z_95"]
    pdf = df.toPandas()
    if pdf.empty:
        return spark.createDataFrame([], conform_ddl(kpi))
    pdf = pdf.sort_values(keys + ["t"], kind="mergesort").reset_index(drop=True)
    groups = pdf.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    n = pdf["at_risk"].to_numpy(dtype=np.float64)
    d = pdf["events"].to_numpy(dtype=np.float64)
    surv = np.empty(len(pdf))
    var_sum = np.empty(len(pdf))
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    ends = np.r_[starts[1:], len(pdf)]
    for a, b in zip(starts, ends, strict=True):
        s = 1.0
        g = 0.0
        for i in range(a, b):
            if d[i] > 0:
                s *= 1.0 - d[i] / n[i]
                g += d[i] / (n[i] * (n[i] - d[i])) if n[i] > d[i] else math.inf
            surv[i] = s
            var_sum[i] = g
    pdf["survival"] = surv
    with np.errstate(divide="ignore", invalid="ignore"):
        ls = np.log(surv)
        se = np.sqrt(var_sum) / np.abs(ls)
        lower = np.exp(-np.exp(np.log(-ls) + z * se))
        upper = np.exp(-np.exp(np.log(-ls) - z * se))
    ok = (surv > 0) & (surv < 1) & np.isfinite(se)
    pdf["ci_lower"] = np.where(ok, lower, np.nan)
    pdf["ci_upper"] = np.where(ok, upper, np.nan)
    pdf = pdf.replace({np.nan: None})
    return spark.createDataFrame(pdf[out_cols], conform_ddl(kpi))


def conform_ddl(kpi):
    return ", ".join(f"`{c['name']}` {spark_type(c['type'])}" for c in file_columns(kpi))


POST = {"kaplan_meier": kaplan_meier}


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
            write_kpi(spark, hadoop, df, staging, rel)
            rows = spark.read.parquet(join(staging, rel, "part-0.parquet")).count()
            ms = int((time.perf_counter() - k0) * 1000)
            written.append((kpi, rel, rows, ms))
            print(f"crm_kpi_spark: {kpi_name}: {rows} rows in {ms} ms", file=sys.stderr, flush=True)
        # Publish: each KPI's partition replaces the one in OUT.
        for kpi, rel, _, _ in written:
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
