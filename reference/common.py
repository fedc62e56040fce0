"""What both reference engines and both comparisons share: the KPI catalog (from the engine,
`crm-kpi list --json`), the configuration (`crm-kpi.toml`), the store's files, the registry check
and the key-by-key comparison with crm-kpi's output.

Nothing here is a KPI definition: those are in reference/duckdb/<family>.py and
reference/pandas/<family>.py.
"""

import datetime
import functools
import json
import math
import numbers
import os
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The documented default configuration; the engine embeds the same file.
DEFAULT_CONFIG = REPO / "crm-kpi.toml"

# Constants of the definitions (`crm-kpi list --long`), not settings.
US_PER_DAY = 86_400_000_000
Z_95 = 1.959963984540054
# lost_reengagement: a lost deal is "upcoming" when its window opens within this many days.
REENGAGEMENT_LOOKAHEAD_DAYS = 30
# A month of the predictive CLV horizon, in days.
CLV_MONTH_DAYS = 30.4375


# ---------------------------------------------------------------------------------------------
# The catalog


def load_catalog(source=None):
    """The KPI catalog, in catalog order: a list of {name, family, family_title, grain,
    definition, version, key, columns: [{name, type}]}. `source` is a crm-kpi binary (asked with
    `list --json`) or a JSON file holding its output; default: $CRM_KPI_CATALOG, else
    $CRM_KPI_BIN."""
    source = source or os.environ.get("CRM_KPI_CATALOG") or os.environ.get("CRM_KPI_BIN")
    if not source:
        raise SystemExit("no KPI catalog: pass --catalog BINARY|FILE.json or set CRM_KPI_BIN to a crm-kpi binary")
    if source.endswith(".json"):
        with open(source) as f:
            catalog = json.load(f)
    else:
        try:
            run = subprocess.run([source, "list", "--json"], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", None) or str(e)
            raise SystemExit(f"cannot read the KPI catalog from `{source} list --json`: {detail.strip()}") from e
        catalog = json.loads(run.stdout)
    if not isinstance(catalog, list) or not all(
        isinstance(k, dict) and {"name", "family", "key", "columns"} <= k.keys() for k in catalog
    ):
        raise SystemExit(f"{source}: not a KPI catalog (a JSON array of {{name, family, key, columns, ...}})")
    return catalog


def registry_problems(catalog, engine, families):
    """Why an engine's registry does not cover the catalog: a KPI of the catalog without a
    reference, a reference for a KPI not in the catalog, or one in another family's module.
    `families` maps each family module's name to its KPIS."""
    problems = []
    family_of = {}
    for family, kpis in families.items():
        for name in kpis:
            family_of[name] = family
    in_catalog = {k["name"] for k in catalog}
    for k in catalog:
        name, family = k["name"], k["family"]
        if name not in family_of:
            problems.append(f"{engine}: no reference for KPI {name} (add it to KPIS in reference/{engine}/{family}.py)")
        elif family_of[name] != family:
            problems.append(
                f"{engine}: KPI {name} is registered in reference/{engine}/{family_of[name]}.py, "
                f"but the catalog puts it in family {family}"
            )
    for name, family in family_of.items():
        if name not in in_catalog:
            problems.append(
                f"{engine}: reference/{engine}/{family}.py has a reference for {name}, not a KPI of the catalog"
            )
    return problems


def collect(families):
    """One engine's registry {kpi: function} from its family modules' KPIS."""
    kpis, where = {}, {}
    for module in families.values():
        path = module.__name__.replace(".", "/") + ".py"
        for name, fn in module.KPIS.items():
            if name in kpis:
                raise SystemExit(f"KPI {name} has two references, in {where[name]} and in {path}")
            kpis[name], where[name] = fn, path
    return kpis


# ---------------------------------------------------------------------------------------------
# The configuration


DEFAULT_PIPELINE = "default"
# Between a pipeline's name and a stage's in a qualified stage name (`qualified`).
SEP = "\x1f"


@dataclass(frozen=True)
class Stage:
    name: str
    probability: float | None
    terminal: str | None  # "won", "lost" or None (an open stage)
    pipeline: str = DEFAULT_PIPELINE


@dataclass(frozen=True)
class Pipeline:
    """Every pipeline's stages, pipeline after pipeline, each in its order (docs/decisions.md,
    "Pipelines"): a stage is known by (pipeline, name)."""

    stages: tuple

    @property
    def pipelines(self):
        """The pipelines' names, in order."""
        return list(dict.fromkeys(s.pipeline for s in self.stages)) or [DEFAULT_PIPELINE]

    @property
    def multi(self):
        return len(self.pipelines) > 1

    def qualified(self):
        """The same stages named `pipeline + SEP + name` (unique over all pipelines), so that
        the single-pipeline rules, which look stages up by name, apply unchanged. With one
        pipeline, the pipeline itself."""
        if not self.multi:
            return self
        return Pipeline(
            tuple(Stage(s.pipeline + SEP + s.name, s.probability, s.terminal, s.pipeline) for s in self.stages)
        )

    def funnel_steps(self):
        """stage_funnel's steps, pipeline after pipeline: its non-terminal stages in order (the
        ordered chain), then its won stages, as (stage, pipeline, stage_index in the pipeline,
        in_chain)."""
        steps = []
        for p in self.pipelines:
            mine = [s for s in self.stages if s.pipeline == p]
            steps += [(s.name, p, i, True) for i, s in enumerate(mine) if s.terminal is None]
            steps += [(s.name, p, i, False) for i, s in enumerate(mine) if s.terminal == "won"]
        return steps

    def deal_pipeline(self, p):
        """A deal's pipeline: its export's when configured, else the first."""
        return p if p in set(self.pipelines) else self.pipelines[0]

    def resolve(self, deal_pipeline, stage):
        """The qualified name of a stage event of a deal in `deal_pipeline`: the stage of that
        name in the deal's pipeline, else the first stage of that name (the deal moved), else
        the name itself (a stage no pipeline has)."""
        if stage is None:
            return None
        if (deal_pipeline, stage) in self._keys:
            return deal_pipeline + SEP + stage
        first = self._first_by_name.get(stage)
        return first + SEP + stage if first is not None else stage

    @functools.cached_property
    def _keys(self):
        return {(s.pipeline, s.name) for s in self.stages}

    @functools.cached_property
    def _first_by_name(self):
        out = {}
        for s in self.stages:
            out.setdefault(s.name, s.pipeline)
        return out

    @property
    def names(self):
        return [s.name for s in self.stages]

    @property
    def index(self):
        """Position of each stage in the pipeline (0 = first)."""
        return {s.name: i for i, s in enumerate(self.stages)}

    @property
    def probability(self):
        return {s.name: s.probability for s in self.stages}

    @property
    def terminal(self):
        """{stage: "won" | "lost"} for the stages that close a deal."""
        return {s.name: s.terminal for s in self.stages if s.terminal}

    @property
    def won(self):
        return [s.name for s in self.stages if s.terminal == "won"]

    @property
    def lost(self):
        return [s.name for s in self.stages if s.terminal == "lost"]

    @property
    def open(self):
        """The non-terminal stages, in order."""
        return [s.name for s in self.stages if s.terminal is None]


@dataclass(frozen=True)
class Config:
    """The settings of crm-kpi.toml the KPI definitions read."""

    path: str
    timezone: str
    lead_converted_event: str
    deal_size_buckets: tuple
    stale_after_days: int
    reengagement_min_days: int
    reengagement_max_days: int
    clv_time_unit: str
    clv_horizon_months: int
    clv_monthly_discount_rate: float
    clv_segment_by: str
    pipeline: Pipeline

    @property
    def clv_unit_days(self):
        """Days per unit of recency, T and the fitted rates."""
        return {"weeks": 7.0, "days": 1.0}[self.clv_time_unit]

    def require_utc(self, engine):
        """The references cut periods and days in UTC only."""
        if self.timezone not in ("UTC", "Etc/UTC"):
            raise SystemExit(
                f"{engine}: {self.path} sets timezone = {self.timezone!r}; the references implement UTC only"
            )


def load_config(path=None):
    """crm-kpi.toml as the engine reads it: the file at `path` (default: $CRM_KPI_CONFIG, else
    the repository's crm-kpi.toml), each key it leaves out taken from the documented default
    (the repository's crm-kpi.toml, which the engine embeds)."""
    path = Path(path or os.environ.get("CRM_KPI_CONFIG") or DEFAULT_CONFIG)
    with open(DEFAULT_CONFIG, "rb") as f:
        merged = tomllib.load(f)
    with open(path, "rb") as f:
        own = tomllib.load(f)
    clv = {**merged.get("clv", {}), **own.get("clv", {})}
    merged.update(own)
    merged["clv"] = clv
    if own.get("pipelines"):
        stages = tuple(
            Stage(s["name"], s.get("probability"), s.get("terminal"), p["name"])
            for p in own["pipelines"]
            for s in p["stages"]
        )
    else:
        stages = tuple(
            Stage(s["name"], s.get("probability"), s.get("terminal"), s.get("pipeline", DEFAULT_PIPELINE))
            for s in merged["stages"]
        )
    return Config(
        path=str(path),
        timezone=merged["timezone"],
        lead_converted_event=merged["lead_converted_event"],
        deal_size_buckets=tuple(float(b) for b in merged["deal_size_buckets"]),
        stale_after_days=int(merged["stale_after_days"]),
        reengagement_min_days=int(merged["reengagement"]["min_days"]),
        reengagement_max_days=int(merged["reengagement"]["max_days"]),
        clv_time_unit=clv["time_unit"],
        clv_horizon_months=int(clv["horizon_months"]),
        clv_monthly_discount_rate=float(clv["monthly_discount_rate"]),
        clv_segment_by=clv["segment_by"],
        pipeline=Pipeline(stages),
    )


def store_pipeline(store, cfg):
    """The pipeline the KPIs use: the store's `stages` table when it holds any (a CRM's own stage
    list; sorted by position, nulls last, then name), else the config's [[stages]]."""
    fs = store_files(store, "stages")
    if fs:
        import pyarrow.parquet as pq

        rows = [r for f in fs for r in pq.read_table(f, partitioning=None).to_pylist()]
        if rows:
            rows.sort(key=lambda r: (r.get("position") is None, r.get("position") or 0, r["stage"]))
            # Named pipelines in the order of their first stage, each with its own stages and
            # those naming none (shared), a name once per pipeline.
            names = list(dict.fromkeys(r["pipeline"] for r in rows if r.get("pipeline") is not None))
            stages = []
            for p in names or [DEFAULT_PIPELINE]:
                seen = set()
                for r in rows:
                    if r.get("pipeline") in (None, p) and r["stage"] not in seen:
                        seen.add(r["stage"])
                        stages.append(Stage(r["stage"], r.get("probability"), r.get("terminal"), p))
            return Pipeline(tuple(stages))
    return cfg.pipeline


# ---------------------------------------------------------------------------------------------
# The store


def store_files(store, table):
    """The Parquet files of a store table (none when the store has no such table)."""
    with open(f"{store}/_manifest.json") as f:
        manifest = json.load(f)
    t = manifest["tables"].get(table)
    return [f"{store}/{f['path']}" for f in t["files"]] if t else []


# The canonical columns the references read, for a store where a table has no file (a store
# with files takes the schema of its own Parquet files). Types as the catalog names them.
TABLE_COLUMNS = {
    "leads": {
        "lead_id": "string",
        "created_at": "timestamp[us, UTC]",
        "source": "string",
        "campaign_id": "string",
        "owner_id": "string",
        "region": "string",
        "qualified_at": "timestamp[us, UTC]",
        "converted_at": "timestamp[us, UTC]",
        "account_id": "string",
        "disqualified_at": "timestamp[us, UTC]",
    },
    "accounts": {
        "account_id": "string",
        "created_at": "timestamp[us, UTC]",
        "name": "string",
        "region": "string",
        "segment": "string",
        "industry": "string",
    },
    "opportunities": {
        "opportunity_id": "string",
        "account_id": "string",
        "created_at": "timestamp[us, UTC]",
        "owner_id": "string",
        "status": "string",
        "closed_at": "timestamp[us, UTC]",
        "expected_close_date": "date",
        "lead_id": "string",
        "campaign_id": "string",
        "loss_reason": "string",
        "region": "string",
        "amount_base": "float64",
    },
    "stage_events": {"opportunity_id": "string", "stage": "string", "entered_at": "timestamp[us, UTC]"},
    "orders": {
        "order_id": "string",
        "account_id": "string",
        "ordered_at": "timestamp[us, UTC]",
        "amount": "float64",
        "currency": "string",
        "opportunity_id": "string",
        "paid_at": "timestamp[us, UTC]",
        "due_at": "timestamp[us, UTC]",
        "region": "string",
        "channel": "string",
        "is_refund": "boolean",
        "amount_base": "float64",
    },
    "activities": {
        "activity_id": "string",
        "owner_id": "string",
        "kind": "string",
        "occurred_at": "timestamp[us, UTC]",
        "outcome": "string",
        "duration_s": "int64",
        "lead_id": "string",
        "opportunity_id": "string",
        "account_id": "string",
    },
    "targets": {
        "scope": "string",
        "scope_kind": "string",
        "period_start": "date",
        "grain": "string",
        "metric": "string",
        "value": "float64",
    },
    "campaigns": {
        "campaign_id": "string",
        "name": "string",
        "channel": "string",
        "spend": "float64",
        "currency": "string",
        "started_at": "timestamp[us, UTC]",
        "ended_at": "timestamp[us, UTC]",
        "spend_base": "float64",
    },
    "forecasts": {
        "owner_id": "string",
        "period_start": "date",
        "grain": "string",
        "category": "string",
        "submitted_at": "timestamp[us, UTC]",
        "pipeline": "string",
        "amount_base": "float64",
    },
    "reps": {
        "rep_id": "string",
        "name": "string",
        "team": "string",
        "region": "string",
        "manager_id": "string",
        "active_from": "date",
        "active_to": "date",
    },
}

_DUCKDB_TYPES = {
    "string": "VARCHAR",
    "timestamp[us, UTC]": "TIMESTAMPTZ",
    "date": "DATE",
    "float64": "DOUBLE",
    "int64": "BIGINT",
    "boolean": "BOOLEAN",
}


def duckdb_columns(table):
    """TABLE_COLUMNS of `table` as a DuckDB column list."""
    return ", ".join(f"{c} {_DUCKDB_TYPES[t]}" for c, t in TABLE_COLUMNS[table].items())


def duckdb_missing_columns(table, have):
    """`, NULL::type AS c` for each column of TABLE_COLUMNS[table] not in `have` (a column the
    store's files predate reads as null)."""
    return "".join(f", NULL::{_DUCKDB_TYPES[t]} AS {c}" for c, t in TABLE_COLUMNS[table].items() if c not in have)


def arrow_schema(table):
    """TABLE_COLUMNS of `table` as an Arrow schema."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "timestamp[us, UTC]": pa.timestamp("us", tz="UTC"),
        "date": pa.date32(),
        "float64": pa.float64(),
        "int64": pa.int64(),
        "boolean": pa.bool_(),
    }
    return pa.schema([(c, types[t]) for c, t in TABLE_COLUMNS[table].items()])


# ---------------------------------------------------------------------------------------------
# Comparing a reference with crm-kpi's output

# Columns compared with a relative tolerance instead of the exact 1e-9, per KPI. The predictive
# CLV references fit their own models: two maximum-likelihood optimizers agree only to the
# flatness of the likelihood. Estimates 1e-5 and standard errors 2e-3 (a finite-difference
# Hessian on both sides); log_likelihood and n_customers stay exact (the likelihood is flat at
# the optimum). The predictions inherit the estimates' differences, amplified for heavy buyers by
# the exponent r + frequency of the BG/NBD terms: moving every estimate by 1e-5 (the estimates'
# tolerance) moves p_alive, expected_purchases and clv by up to 1.1e-4 at scale tiny and s and
# 1.4e-4 at m (frequency up to 171), expected_avg_value by 6e-5. So 3e-4: what the estimates'
# tolerance implies, with a margin of 2x, and still tight enough to catch a wrong month length
# (4.345 weeks instead of 30.4375 / 7 = 4.348 is 7e-4 relative), discount or horizon. The RFM
# columns (frequency, recency, t, monetary_value) stay exact; the cross-check also evaluates the
# predictions at crm-kpi's own parameters, exactly (reference/crosscheck.py).
TOLERANCES = {
    "clv_model": {"value": 1e-5, "std_err": 2e-3},
    "clv_predictive": {"p_alive": 3e-4, "expected_purchases": 3e-4, "expected_avg_value": 3e-4, "clv": 3e-4},
}


def output_path(out, kpi, as_of, grain="month"):
    """crm-kpi's output file of a KPI: OUT/<kpi>/grain=<grain>/as_of=<date>/part-0.parquet."""
    return f"{out}/{kpi}/grain={grain}/as_of={as_of}/part-0.parquet"


def output_relation(out, kpi, as_of, grain="month"):
    """crm-kpi's output of a KPI as a DuckDB relation, read as warehouses read it: the file's
    columns with `as_of` (a DATE) from its folder name."""
    path = output_path(out, kpi, as_of, grain)
    return f"(SELECT * EXCLUDE (grain) FROM read_parquet('{path}', hive_partitioning = true))"


def fetch(con, sql):
    """(columns, rows as dicts) of a DuckDB query."""
    cur = con.execute(sql)
    cols = [d[0] for d in cur.description]
    return cols, [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


def is_nan(v):
    return isinstance(v, float) and math.isnan(v)


def is_float_type(t):
    return t in ("float32", "float64")


def key_part(spec, name, v):
    """A key value as text. A float key (stage_duration_survival's t_days) is a duration in
    days of whole microseconds on both sides: keyed on those, not on the float."""
    if v is None:
        return "<null>"
    if is_nan(v):
        return "<NaN>"
    if is_float_type(column_types(spec).get(name)):
        return str(round(float(v) * US_PER_DAY))
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()[:10]
    return str(v)


def column_types(spec):
    return {c["name"]: c["type"] for c in spec["columns"]}


def value_columns(spec):
    """The catalog's columns of a KPI that are compared: all but its key and as_of."""
    return [c["name"] for c in spec["columns"] if c["name"] not in spec["key"] and c["name"] != "as_of"]


def same(a, b):
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, (datetime.date, datetime.datetime)) or isinstance(b, (datetime.date, datetime.datetime)):
        return str(a)[:10] == str(b)[:10]
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, numbers.Number) and isinstance(b, numbers.Number):
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            return False
        return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
    return str(a) == str(b)


def column_problems(spec, ref_cols, mine_cols, engine):
    """Lines about catalog columns missing from either side and reference columns the catalog
    does not have."""
    lines = []
    kpi = spec["name"]
    cat = [c["name"] for c in spec["columns"]]
    for c in value_columns(spec) + list(spec["key"]):
        if c not in ref_cols:
            lines.append(f"  {kpi}: column {c} missing from {engine}'s reference")
        if c not in mine_cols:
            lines.append(f"  {kpi}: column {c} missing from crm-kpi's output")
    for c in ref_cols:
        if c not in cat:
            lines.append(f"  {kpi}: column {c} of {engine}'s reference is not in the catalog")
    return lines


def read_output(con, out, kpi, as_of, grain="month"):
    """crm-kpi's rows of a KPI, or None without an output file."""
    path = output_path(out, kpi, as_of, grain)
    if not os.path.exists(path):
        return None
    return fetch(con, f"SELECT * FROM {output_relation(out, kpi, as_of, grain)}")


def compare(con, spec, ref, out, as_of, engine, label=None, grain="month"):
    """Compares a reference (columns, rows as dicts) with crm-kpi's output of the same KPI, key
    by key: numbers equal to 1e-9 relative (at least 1e-9 absolute), anything else exactly, the
    catalog's columns present on both sides. Prints one line (and up to 8 differences); returns
    the number of mismatching values and rows. `label` names the line (default: the KPI)."""
    kpi, key = spec["name"], spec["key"]
    label = label or kpi
    mine_out = read_output(con, out, kpi, as_of, grain)
    if mine_out is None:
        print(f"{label:<24} no output at {output_path(out, kpi, as_of, grain)}")
        return 1
    mine_cols, mine = mine_out
    ref_cols, ref_rows = ref
    problems = column_problems(spec, ref_cols, mine_cols, engine)
    for line in problems:
        print(line)
    mism = len(problems)
    if any(c not in ref_cols or c not in mine_cols for c in key):
        print(f"{label:<24} {mism} MISMATCHES (key columns missing)")
        return mism
    cols = [c for c in value_columns(spec) if c in ref_cols and c in mine_cols]

    def k(r):
        return tuple(key_part(spec, n, r[n]) for n in key)

    ref_by, mine_by = {}, {}
    for r in ref_rows:
        if k(r) in ref_by:
            mism += 1
            print(f"  {kpi}: duplicate {engine} key {k(r)}")
        ref_by[k(r)] = r
    for r in mine:
        if k(r) in mine_by:
            mism += 1
            print(f"  {kpi}: duplicate crm-kpi key {k(r)}")
        mine_by[k(r)] = r
        if any(is_nan(v) for v in r.values()):
            mism += 1
            print(f"  {kpi}: NaN in crm-kpi row {k(r)}")
        if not same(r["as_of"], datetime.date.fromisoformat(as_of)):
            mism += 1
            print(f"  {kpi}: as_of {r['as_of']} in crm-kpi row {k(r)}")
    shown = 0
    for key_v in sorted(set(ref_by) | set(mine_by)):
        r, m = ref_by.get(key_v), mine_by.get(key_v)
        if r is None or m is None:
            mism += 1
            if shown < 8:
                shown += 1
                print(f"  {kpi}: row {key_v} only in {'crm-kpi' if r is None else engine}")
            continue
        for c in cols:
            if not same(r[c], m[c]):
                mism += 1
                if shown < 8:
                    shown += 1
                    print(f"  {kpi}: {key_v} {c}: {engine} {r[c]!r} vs crm-kpi {m[c]!r}")
    verdict = "OK" if mism == 0 else f"{mism} MISMATCHES"
    print(f"{label:<24} rows {len(mine_by):>7} ({engine} {len(ref_by)}): {verdict}")
    return mism


def rel_diff(a, b):
    a, b = float(a), float(b)
    return 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))


def within_tolerance(con, spec, ref, out, as_of, engine, grain="month"):
    """`ref` with each TOLERANCES column's value replaced by crm-kpi's where the two agree within
    the column's relative tolerance, so that `compare`'s exact check passes them (values beyond
    it are kept and reported as mismatches). Prints, per column, the tolerance and the largest
    relative difference seen."""
    kpi, key = spec["name"], spec["key"]
    tols = TOLERANCES.get(kpi)
    mine_out = read_output(con, out, kpi, as_of, grain)
    if not tols or mine_out is None:
        return ref
    cols, rows = ref

    def k(r):
        return tuple(key_part(spec, n, r[n]) for n in key)

    mine = {k(r): r for r in mine_out[1]}
    worst = {c: (0.0, None) for c in tols}
    n = {c: 0 for c in tols}
    beyond = {c: 0 for c in tols}
    snapped = []
    for r in rows:
        m = mine.get(k(r))
        r = dict(r)
        for c, tol in tols.items():
            if m is None or c not in r or c not in m or r[c] is None or m[c] is None:
                continue
            d = rel_diff(r[c], m[c])
            if math.isnan(d):
                continue
            n[c] += 1
            if d > worst[c][0]:
                worst[c] = (d, k(r))
            if d <= tol:
                r[c] = m[c]
            else:
                beyond[c] += 1
        snapped.append(r)
    for c, tol in tols.items():
        d, at = worst[c]
        print(
            f"[{engine}]   {kpi}.{c}: tolerance {tol:g} relative, max relative difference {d:.2e} over {n[c]} "
            f"values" + (f" (at {at})" if at else "") + (f", {beyond[c]} BEYOND" if beyond[c] else "")
        )
    return cols, snapped


def arrow_table(cols):
    """Columns (lists, numpy or masked arrays, Arrow arrays; NaN and masked values are null) as
    an Arrow table."""
    import pyarrow as pa

    arrow = (pa.Array, pa.ChunkedArray)
    return pa.table({c: v if isinstance(v, arrow) else pa.array(v, from_pandas=True) for c, v in cols.items()})
