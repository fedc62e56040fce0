//! The catalog on Apache Spark: each KPI's Spark SQL (beside its polars code: the registry
//! entry names `src/kpi/spark/<kpi>.sql`), rendered for one configuration, as_of and grain
//! into a bundle that `spark-submit` runs with no crm-kpi binary on the cluster
//! (`crm-kpi spark export`, `crm-kpi run --engine spark`).
//!
//! A template is Spark SQL with `{{name}}` placeholders for the run's values (`as_of_ts`,
//! `as_of_date`, `cur_period`, `grain`, the configuration's settings) and period macros that
//! cut dates in the session timezone (the configured one) at the run's grain:
//! `{{period(x)}}` (start of the period of a date or timestamp `x`, a DATE),
//! `{{next_period(d)}}` (the period start after the period start `d`),
//! `{{period_end(d)}}` (the last microsecond of the period starting at `d`, a TIMESTAMP) and
//! `{{period_ordinal(d)}}` (a period start's position on the grain's grid, BIGINT: differences
//! count periods). An unknown name is an error, not an empty string.
//!
//! Files run in order: `views.sql` (the store's tables as of as_of: deal state, visits,
//! snapshots), each family's `views_<family>.sql`, then the family's KPIs; a KPI's SQL is
//! statements whose last one is a SELECT of the catalog's columns in order. What SQL does not
//! do well runs after it in the entry point (`post`: the Kaplan-Meier products, the CLV model
//! fits), named in the registry.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate};
use serde_json::json;

use crate::config::{ClvSegmentBy, ClvTimeUnit, ConvertedEvent, Terminal, WeekStart};
use crate::kpi::{Family, Grain, Kpi, Params};

/// A KPI's Spark implementation: its SQL template (see the module's documentation). A line
/// `-- post: NAME` in it names the entry point's step run on the SQL's result (`POST` in
/// crm_kpi_spark.py).
#[derive(Debug, Clone, Copy)]
pub struct Spark {
    pub sql: &'static str,
}

/// The `-- post: NAME` directive of a KPI's SQL, if any.
pub fn post_step(sql: &str) -> Option<&str> {
    sql.lines()
        .find_map(|l| l.trim().strip_prefix("-- post:"))
        .map(str::trim)
}

impl Spark {
    pub const fn sql(sql: &'static str) -> Spark {
        Spark { sql }
    }
}

/// The shared views every family reads.
pub const VIEWS: &str = include_str!("spark/views.sql");
/// The PySpark entry point of a bundle.
pub const ENTRY_POINT: &str = include_str!("spark/crm_kpi_spark.py");
/// What the entry point imports (besides pyspark, which the cluster provides).
pub const REQUIREMENTS: &str = "# crm-kpi's Spark bundle: what crm_kpi_spark.py imports on the driver, besides pyspark\n\
pyspark>=3.5\nnumpy>=1.26\npandas>=2.1\npyarrow>=14\nscipy>=1.11\n";

/// A family's own shared views (run before its KPIs).
pub fn family_views(f: Family) -> &'static str {
    match f {
        Family::Leads => include_str!("spark/views_leads.sql"),
        Family::Funnel => include_str!("spark/views_funnel.sql"),
        Family::Reps => include_str!("spark/views_reps.sql"),
        Family::Customers => include_str!("spark/views_customers.sql"),
        Family::Trends => include_str!("spark/views_trends.sql"),
    }
}

/// The values a template's `{{name}}` placeholders take for one run.
pub fn vars(p: &Params) -> BTreeMap<&'static str, String> {
    let c = &p.config;
    let as_of = p.as_of_date();
    let mut v = BTreeMap::new();
    v.insert("as_of_us", p.as_of_us.to_string());
    v.insert("as_of_ts", format!("timestamp_micros({})", p.as_of_us));
    v.insert("as_of_date", date_lit(as_of));
    v.insert("cur_period", date_lit(period_start(as_of, p)));
    v.insert("grain", str_lit(p.grain.name()));
    v.insert(
        "period_step",
        match p.grain {
            Grain::Week => "INTERVAL 7 DAYS",
            Grain::Month => "INTERVAL 1 MONTH",
            Grain::Quarter => "INTERVAL 3 MONTHS",
            Grain::Year => "INTERVAL 12 MONTHS",
        }
        .into(),
    );
    v.insert("timezone", str_lit(&c.timezone));
    v.insert("stale_after_days", c.stale_after_days.to_string());
    v.insert("reengagement_min_days", c.reengagement.min_days.to_string());
    v.insert("reengagement_max_days", c.reengagement.max_days.to_string());
    v.insert(
        "lead_converted_event",
        str_lit(match c.lead_converted_event {
            ConvertedEvent::Opportunity => "opportunity",
            ConvertedEvent::Won => "won",
            ConvertedEvent::PaidOrder => "paid_order",
        }),
    );
    // Deal-size buckets [b0, ..., bn]: small < b0 <= medium < bn <= large.
    let bucket = |b: Option<&f64>| b.map_or("CAST(NULL AS DOUBLE)".into(), |b| double_lit(*b));
    v.insert("deal_size_medium_from", bucket(c.deal_size_buckets.first()));
    v.insert("deal_size_large_from", bucket(c.deal_size_buckets.last()));
    v.insert(
        "clv_unit_days",
        double_lit(match c.clv.time_unit {
            ClvTimeUnit::Weeks => 7.0,
            ClvTimeUnit::Days => 1.0,
        }),
    );
    v.insert("clv_horizon_months", c.clv.horizon_months.to_string());
    v.insert("clv_monthly_discount_rate", double_lit(c.clv.monthly_discount_rate));
    v.insert(
        "clv_segment_by",
        str_lit(match c.clv.segment_by {
            ClvSegmentBy::None => "none",
            ClvSegmentBy::Source => "source",
            ClvSegmentBy::Segment => "segment",
        }),
    );
    // The configured stages as rows (pipeline, stage, position, probability, terminal); the store's own
    // stage list replaces them at run time when it holds one (views.sql).
    let rows: Vec<String> = c
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            format!(
                "({}, {}, {i}, {}, {})",
                str_lit(&s.pipeline),
                str_lit(&s.name),
                s.probability.map_or("CAST(NULL AS DOUBLE)".into(), double_lit),
                match s.terminal {
                    Some(Terminal::Won) => "'won'",
                    Some(Terminal::Lost) => "'lost'",
                    None => "CAST(NULL AS STRING)",
                }
            )
        })
        .collect();
    v.insert(
        "config_stages",
        if rows.is_empty() {
            "SELECT CAST(NULL AS STRING) AS pipeline, CAST(NULL AS STRING) AS stage, 0 AS position, CAST(NULL AS DOUBLE) AS probability, \
             CAST(NULL AS STRING) AS terminal WHERE false"
                .into()
        } else {
            format!(
                "SELECT * FROM VALUES {} AS t(pipeline, stage, position, probability, terminal)",
                rows.join(", ")
            )
        },
    );
    v
}

fn date_lit(d: NaiveDate) -> String {
    format!("DATE'{d}'")
}

fn str_lit(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A DOUBLE literal (Spark reads `1.5` as a DECIMAL).
fn double_lit(x: f64) -> String {
    format!("CAST({x:?} AS DOUBLE)")
}

/// The first day of the period a local date falls in (as `periods::period_start_of_date`).
pub fn period_start(d: NaiveDate, p: &Params) -> NaiveDate {
    let month_floor = |d: NaiveDate, months: u32, shift: u32| {
        let m0 = (d.year() as i64 * 12 + d.month0() as i64 - shift as i64).div_euclid(months as i64) * months as i64
            + shift as i64;
        NaiveDate::from_ymd_opt(m0.div_euclid(12) as i32, m0.rem_euclid(12) as u32 + 1, 1).expect("a month start")
    };
    let shift = p.config.fiscal_year_start_month.saturating_sub(1);
    match p.grain {
        Grain::Week => {
            let back = match p.config.week_start {
                WeekStart::Monday => d.weekday().num_days_from_monday(),
                WeekStart::Sunday => d.weekday().num_days_from_sunday(),
            };
            d - Duration::days(back as i64)
        }
        Grain::Month => month_floor(d, 1, 0),
        Grain::Quarter => month_floor(d, 3, shift),
        Grain::Year => month_floor(d, 12, shift),
    }
}

/// The Spark SQL of a period macro applied to `arg`.
fn period_macro(name: &str, arg: &str, p: &Params) -> Option<String> {
    let months = match p.grain {
        Grain::Week => 0,
        Grain::Month => 1,
        Grain::Quarter => 3,
        Grain::Year => 12,
    };
    let shift = p.config.fiscal_year_start_month.saturating_sub(1);
    Some(match name {
        "period" => {
            let d = format!("to_date({arg})");
            match p.grain {
                Grain::Week => match p.config.week_start {
                    WeekStart::Monday => format!("date_sub({d}, (dayofweek({d}) + 5) % 7)"),
                    WeekStart::Sunday => format!("date_sub({d}, dayofweek({d}) - 1)"),
                },
                Grain::Month => format!("trunc({d}, 'MM')"),
                Grain::Quarter | Grain::Year => {
                    let unit = if p.grain == Grain::Quarter { "QUARTER" } else { "YEAR" };
                    if shift == 0 {
                        format!("trunc({d}, '{unit}')")
                    } else {
                        format!("add_months(trunc(add_months({d}, -{shift}), '{unit}'), {shift})")
                    }
                }
            }
        }
        "next_period" => match p.grain {
            Grain::Week => format!("date_add({arg}, 7)"),
            _ => format!("add_months({arg}, {months})"),
        },
        "period_end" => {
            let next = period_macro("next_period", arg, p)?;
            format!("(CAST({next} AS TIMESTAMP) - INTERVAL 1 MICROSECOND)")
        }
        "period_ordinal" => match p.grain {
            Grain::Week => format!("CAST(floor(unix_date({arg}) / 7) AS BIGINT)"),
            _ => format!("CAST(floor((year({arg}) * 12 + month({arg}) - 1) / {months}) AS BIGINT)"),
        },
        _ => return None,
    })
}

/// A template rendered: every `{{name}}` replaced by its value and every `{{macro(arg)}}`
/// expanded (arguments may hold placeholders and parentheses). `what` names the template in
/// errors.
pub fn render(template: &str, p: &Params, what: &str) -> Result<String, String> {
    render_with(template, &vars(p), p, what)
}

fn render_with(
    template: &str,
    vars: &BTreeMap<&'static str, String>,
    p: &Params,
    what: &str,
) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = closing(after) else {
            return Err(format!("{what}: `{{{{` without its `}}}}`"));
        };
        let inner = after[..end].trim();
        rest = &after[end + 2..];
        if let Some(open) = inner.find('(') {
            let name = inner[..open].trim();
            let Some(arg) = inner[open + 1..].strip_suffix(')') else {
                return Err(format!("{what}: `{{{{{inner}}}}}`: a macro call is NAME(ARG)"));
            };
            let arg = render_with(arg, vars, p, what)?;
            match period_macro(name, &arg, p) {
                Some(s) => out.push_str(&s),
                None => {
                    return Err(format!(
                        "{what}: unknown macro `{name}` (known: period, next_period, period_end, period_ordinal)"
                    ));
                }
            }
        } else {
            match vars.get(inner) {
                Some(v) => out.push_str(v),
                None => {
                    let known: Vec<_> = vars.keys().copied().collect();
                    return Err(format!(
                        "{what}: unknown placeholder `{{{{{inner}}}}}` (known: {})",
                        known.join(", ")
                    ));
                }
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Where the `}}` closing a `{{` is in `s` (nested `{{...}}` skipped).
fn closing(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'{' && b[i + 1] == b'{' {
            depth += 1;
            i += 2;
        } else if b[i] == b'}' && b[i + 1] == b'}' {
            if depth == 0 {
                return Some(i);
            }
            depth -= 1;
            i += 2;
        } else {
            i += 1;
        }
    }
    None
}

/// Templates to read instead of the built-in ones (a folder with `views.sql`,
/// `views_<family>.sql` and `<kpi>.sql`), for developing the SQL without rebuilding.
pub struct Templates<'a> {
    pub dir: Option<&'a Path>,
}

impl Templates<'_> {
    fn get(&self, file: &str, builtin: &'static str) -> Result<String, String> {
        match self.dir {
            None => Ok(builtin.to_string()),
            Some(d) => std::fs::read_to_string(d.join(file)).map_err(|e| format!("{}: {e}", d.join(file).display())),
        }
    }
}

/// Writes a bundle into `dir` for `kpis` (in catalog order): `crm_kpi_spark.py`,
/// `requirements.txt`, `bundle.json` and `sql/NN_<name>.sql`; `config_hash` goes into the run
/// manifest. Returns the files written.
pub fn export(
    dir: &Path,
    kpis: &[Kpi],
    p: &Params,
    config_hash: &str,
    templates: &Templates<'_>,
) -> Result<Vec<std::path::PathBuf>, String> {
    let vars = vars(p);
    let render = |text: &str, what: &str| render_with(text, &vars, p, what);
    let sql_dir = dir.join("sql");
    std::fs::create_dir_all(&sql_dir).map_err(|e| format!("{}: {e}", sql_dir.display()))?;
    let mut written = Vec::new();
    let mut steps = Vec::new();
    let mut n = 0;
    let mut write = |name: &str, text: String, kpi: Option<&Kpi>| -> Result<serde_json::Value, String> {
        let post = post_step(&text).map(str::to_string);
        n += 1;
        let rel = format!("sql/{n:02}_{name}.sql");
        let path = dir.join(&rel);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
        Ok(match kpi {
            None => json!({"sql": rel}),
            Some(k) => json!({"sql": rel, "kpi": k.name, "post": post}),
        })
    };
    let header = |what: &str| {
        format!(
            "-- crm-kpi {} Spark SQL: {what}, rendered for as_of {} ({}), grain {}, timezone {}.\n",
            env!("CARGO_PKG_VERSION"),
            p.as_of_date(),
            p.as_of_us,
            p.grain.name(),
            p.config.timezone
        )
    };
    steps.push(write(
        "views",
        header("the shared views") + &render(&templates.get("views.sql", VIEWS)?, "views.sql")?,
        None,
    )?);
    for f in Family::ALL {
        let mine: Vec<&Kpi> = kpis.iter().filter(|k| k.family == f).collect();
        if mine.is_empty() {
            continue;
        }
        let file = format!("views_{}.sql", f.slug());
        steps.push(write(
            &format!("views_{}", f.slug()),
            header(&format!("the {} family's views", f.title()))
                + &render(&templates.get(&file, family_views(f))?, &file)?,
            None,
        )?);
        for k in mine {
            let file = format!("{}.sql", k.name);
            let text = templates.get(&file, k.spark.sql)?;
            steps.push(write(
                k.name,
                header(&format!("KPI {}", k.name)) + &render(&text, &file)?,
                Some(k),
            )?);
        }
    }
    let catalog: Vec<_> = kpis.iter().map(crate::kpi::catalog::kpi_json).collect();
    let tables: serde_json::Map<String, serde_json::Value> = crate::schema::TABLES
        .iter()
        .map(|t| {
            let cols: Vec<_> = t
                .columns
                .iter()
                .map(|c| json!([c.name, crate::kpi::catalog::type_name(&c.kind.dtype())]))
                .collect();
            (t.name.to_string(), serde_json::Value::Array(cols))
        })
        .collect();
    let as_of_instant = chrono::DateTime::from_timestamp_micros(p.as_of_us)
        .expect("valid as_of")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // spark.sql.unionOutputPartitioning (Spark 4.1, SPARK-52921): a UNION of children claiming
    // the same partitioning zips their partitions; with cached tables whose partitions adaptive
    // execution coalesced, rep_scorecard's UNION of per-owner parts failed ("Can't zip RDDs with
    // unequal numbers of partitions: List(4, 2)"). Off, a union concatenates, as before 4.1.
    let bundle = json!({
        "crm_kpi_version": env!("CARGO_PKG_VERSION"),
        "as_of": p.as_of_date().to_string(),
        "as_of_instant": as_of_instant,
        "grain": p.grain.name(),
        "timezone": p.config.timezone,
        "config_hash": config_hash,
        "spark_conf": {
            "spark.sql.session.timeZone": p.config.timezone,
            "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
            "spark.sql.ansi.enabled": "true",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.unionOutputPartitioning": "false",
        },
        "z_95": crate::stats::km::Z_95,
        "config": serde_json::to_value(&p.config).expect("config serializes"),
        "steps": steps,
        "catalog": catalog,
        "tables": tables,
    });
    let files = [
        ("bundle.json", serde_json::to_string_pretty(&bundle).expect("json")),
        ("crm_kpi_spark.py", templates.get("crm_kpi_spark.py", ENTRY_POINT)?),
        ("requirements.txt", REQUIREMENTS.to_string()),
    ];
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use polars::prelude::*;

    fn params(grain: Grain, week_start: WeekStart, fiscal: u32) -> Params {
        let config = Config {
            week_start,
            fiscal_year_start_month: fiscal,
            ..Config::default()
        };
        // 2026-06-30T12:00:00Z
        Params::new(1_782_820_800_000_000, grain, config)
    }

    /// `period_start` (which gives `{{cur_period}}`) cuts dates as the polars engine does, for
    /// every grain, both week starts and a fiscal year from April, over four years of days.
    #[test]
    fn period_start_matches_the_engines() {
        let first = NaiveDate::from_ymd_opt(2023, 1, 1).unwrap();
        let days: Vec<NaiveDate> = (0..1461).map(|i| first + chrono::Duration::days(i)).collect();
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let ints: Vec<i32> = days.iter().map(|d| (*d - epoch).num_days() as i32).collect();
        for grain in [Grain::Week, Grain::Month, Grain::Quarter, Grain::Year] {
            for (ws, fiscal) in [(WeekStart::Monday, 1), (WeekStart::Sunday, 4)] {
                let p = params(grain, ws, fiscal);
                let df = df!("d" => ints.clone())
                    .unwrap()
                    .lazy()
                    .select([crate::kpi::periods::period_start_of_date(
                        col("d").cast(DataType::Date),
                        grain,
                        &p.config,
                    )
                    .cast(DataType::Int32)])
                    .collect()
                    .unwrap();
                let got = df.column("d").unwrap().i32().unwrap();
                for (i, d) in days.iter().enumerate() {
                    let want = (period_start(*d, &p) - epoch).num_days() as i32;
                    assert_eq!(got.get(i), Some(want), "{d} {grain:?} {ws:?} fiscal {fiscal}");
                }
            }
        }
    }

    #[test]
    fn renders_placeholders_and_macros() {
        let p = params(Grain::Quarter, WeekStart::Monday, 4);
        let s = render(
            "SELECT {{ as_of_ts }}, {{cur_period}}, {{period(max(x))}}, {{period_end({{cur_period}})}}",
            &p,
            "t.sql",
        )
        .unwrap();
        assert_eq!(
            s,
            "SELECT timestamp_micros(1782820800000000), DATE'2026-04-01', \
             add_months(trunc(add_months(to_date(max(x)), -3), 'QUARTER'), 3), \
             (CAST(add_months(DATE'2026-04-01', 3) AS TIMESTAMP) - INTERVAL 1 MICROSECOND)"
        );
        let week = params(Grain::Week, WeekStart::Sunday, 1);
        assert_eq!(
            render("{{period(t)}} {{period_ordinal(d)}}", &week, "t").unwrap(),
            "date_sub(to_date(t), dayofweek(to_date(t)) - 1) CAST(floor(unix_date(d) / 7) AS BIGINT)"
        );
    }

    #[test]
    fn unknown_names_and_unclosed_braces_are_errors() {
        let p = params(Grain::Month, WeekStart::Monday, 1);
        let e = render("SELECT {{as_of}}", &p, "x.sql").unwrap_err();
        assert!(e.starts_with("x.sql: unknown placeholder `{{as_of}}`"), "{e}");
        let e = render("{{quarter(x)}}", &p, "x.sql").unwrap_err();
        assert!(e.contains("unknown macro `quarter`"), "{e}");
        let e = render("SELECT {{as_of_ts", &p, "x.sql").unwrap_err();
        assert!(e.contains("without its"), "{e}");
    }

    #[test]
    fn post_directive() {
        assert_eq!(
            post_step("-- a KPI\n-- post: kaplan_meier\nSELECT 1"),
            Some("kaplan_meier")
        );
        assert_eq!(post_step("SELECT 1"), None);
    }
}
