//! Predictive customer lifetime value (BG/NBD + Gamma-Gamma) and its fitted model.
//!
//! Both KPIs share one computation: the per-customer RFM summary is built lazily and collected
//! (one small eager collect: one row per customer), the models are fitted in Rust (per segment,
//! in parallel with rayon), and the results are returned as an in-memory LazyFrame.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use polars::prelude::*;
use rayon::prelude::*;

use crate::config::ClvSegmentBy;
use crate::kpi::periods::local_date;
use crate::kpi::{Inputs, Kpi, Params, as_of_col};
use crate::stats::bgnbd::{BgNbd, Customer, Fit, FitError};
use crate::stats::gamma_gamma::GammaGamma;

/// Days in the month of the CLV sum: 365.25 / 12.
pub const DAYS_PER_MONTH: f64 = 30.4375;

/// Spend is summed in micro-units of the base currency.
const MICROS: f64 = 1e6;

const PREDICTIVE_DEFINITION: &str = "Predictive CLV per customer: an account with at least one \
    non-refund order at or before as_of (refund rows are ignored). RFM from the local calendar \
    dates (configured timezone) of ordered_at, spend = amount_base summed per day (exactly: each \
    order rounded to 1e-6 of the base currency and added as integers, so the result does not \
    depend on row order): frequency = distinct purchase days minus 1 (repeat purchase days); \
    recency = last purchase date minus first purchase date; t = as_of's date minus first \
    purchase date; both in clv.time_unit (weeks = days / 7, the default, or days); \
    monetary_value = mean spend of the repeat purchase days (first day excluded; null when \
    frequency = 0). A BG/NBD model (Fader, Hardie & Lee 2005) is fitted by maximum likelihood on \
    every customer's (frequency, recency, t), and a Gamma-Gamma spend model on customers with \
    frequency > 0 and monetary_value > 0, one pair of fits per clv.segment_by group (see \
    clv_model). p_alive = P(alive at as_of) = 1 / (1 + [frequency > 0] a / (b + frequency - 1) \
    ((alpha + t) / (alpha + recency))^(r + frequency)); E[X(s)] = the customer's conditional \
    expected purchases in (as_of, as_of + s] (FHL 2005 eq. 10); expected_purchases = E[X(H*u)] \
    with H = clv.horizon_months and u = one month = 30.4375 days in the time unit (30.4375 / 7 \
    weeks); expected_avg_value = Gamma-Gamma E[spend per purchase] = p (v + frequency * \
    monetary_value) / (p * frequency + q - 1) (monetary_value 0 when null, so frequency = 0 \
    gives the population mean p v / (q - 1); null when q <= 1); clv = sum over i = 1..H of \
    expected_avg_value * (E[X(i*u)] - E[X((i-1)*u)]) / (1 + clv.monthly_discount_rate)^i. The \
    model columns are null when the customer's group has no fit (BG/NBD: fewer than 4 customers \
    with frequency > 0; Gamma-Gamma: fewer than 3 usable customers; or no convergence, or an \
    estimate outside [1e-8, 1e8]; a warning is logged). Computed with one eager collect of the \
    RFM (one row per customer) inside the builder; the fits run in Rust and the rows are returned \
    as an in-memory frame.";

const MODEL_DEFINITION: &str = "The fitted CLV models behind clv_predictive, per clv.segment_by \
    group: segment = 'all' (segment_by = none, one model), or the source of the account's first \
    lead (segment_by = source: leads at or before as_of with that account_id, earliest created_at, \
    then lowest lead_id) or the account's segment (segment_by = segment: accounts.segment), null \
    for customers without one (a group of its own). model bg_nbd (params r, alpha, a, b; alpha in \
    clv.time_unit) is fitted on every customer of the group; model gamma_gamma (params p, q, v) \
    on the group's customers with frequency > 0 and monetary_value > 0. Maximum likelihood: \
    Nelder-Mead on the log-parameters from two starts (on an evenly spaced subsample of 10000 \
    customers when the group is larger), then Newton steps with finite-difference derivatives \
    on all of them. value = the estimate; std_err = sqrt of the diagonal of the inverse observed \
    information (central differences of the log-likelihood, step 1e-3 in the log-parameters, \
    delta method; null when not positive definite); log_likelihood = the maximized \
    log-likelihood of the model on the group (BG/NBD: FHL 2005 eq. 6 with times in the time \
    unit; Gamma-Gamma: the density of each customer's mean repeat spend); n_customers = \
    customers the fit used (or would have used). A model with too few customers (BG/NBD: fewer \
    than 4 with frequency > 0; Gamma-Gamma: fewer than 3), no convergence or an estimate outside \
    [1e-8, 1e8] keeps its rows with null value, std_err and log_likelihood, and logs a warning. \
    Computed with one eager collect of the RFM inside the builder.";

pub fn kpis() -> Vec<Kpi> {
    vec![
        Kpi {
            name: "clv_predictive",
            family: "customers and revenue",
            grain: "one row per customer (account with an order at or before as_of)",
            definition: PREDICTIVE_DEFINITION,
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("account_id", DataType::String),
                    ("frequency", DataType::UInt32),
                    ("recency", DataType::Float64),
                    ("t", DataType::Float64),
                    ("monetary_value", DataType::Float64),
                    ("p_alive", DataType::Float64),
                    ("expected_purchases", DataType::Float64),
                    ("expected_avg_value", DataType::Float64),
                    ("clv", DataType::Float64),
                ]
            },
            key: &["account_id"],
            build: clv_predictive,
        },
        Kpi {
            name: "clv_model",
            family: "customers and revenue",
            grain: "one row per segment per model per parameter",
            definition: MODEL_DEFINITION,
            version: 1,
            columns: || {
                vec![
                    ("as_of", DataType::Date),
                    ("model", DataType::String),
                    ("segment", DataType::String),
                    ("param", DataType::String),
                    ("value", DataType::Float64),
                    ("std_err", DataType::Float64),
                    ("log_likelihood", DataType::Float64),
                    ("n_customers", DataType::UInt32),
                ]
            },
            key: &["segment", "model", "param"],
            build: clv_model,
        },
    ]
}

/// The per-customer RFM summary, lazily: account_id, segment, frequency (u32), recency_days,
/// t_days (i32) and monetary_value (null when frequency = 0).
pub fn rfm_days(i: &Inputs, p: &Params) -> LazyFrame {
    let cfg = &p.config;
    let as_of_day = crate::timefmt::days_since_epoch(p.as_of_date());
    // Spend in whole micro-units (1e-6 of the base currency), so the sums are exact integer
    // sums: a float sum depends on the order rows arrive in (its last bits vary from run to
    // run, and the fitted parameters with them).
    let days = i
        .orders
        .clone()
        .filter(col("is_refund").fill_null(lit(false)).not())
        .select([
            col("account_id"),
            local_date(col("ordered_at"), cfg).cast(DataType::Int32).alias("day"),
            (col("amount_base") * lit(MICROS))
                .round(0, RoundMode::HalfAwayFromZero)
                .cast(DataType::Int64)
                .alias("micros"),
        ])
        .group_by([col("account_id"), col("day")])
        .agg([col("micros").sum().alias("spend")]);
    let rfm = days
        .group_by([col("account_id")])
        .agg([
            len().alias("purchase_days"),
            col("day").min().alias("first_day"),
            col("day").max().alias("last_day"),
            col("spend").sum().alias("total_spend"),
            col("spend")
                .sort_by([col("day")], SortMultipleOptions::default())
                .first()
                .alias("first_spend"),
        ])
        .select([
            col("account_id"),
            (col("purchase_days").cast(DataType::Int64) - lit(1i64))
                .cast(DataType::UInt32)
                .alias("frequency"),
            (col("last_day") - col("first_day")).alias("recency_days"),
            (lit(as_of_day) - col("first_day")).alias("t_days"),
            when(col("purchase_days").gt(lit(1u32)))
                .then(
                    (col("total_spend") - col("first_spend")).cast(DataType::Float64)
                        / lit(MICROS)
                        / (col("purchase_days").cast(DataType::Float64) - lit(1.0)),
                )
                .otherwise(lit(NULL).cast(DataType::Float64))
                .alias("monetary_value"),
        ]);
    match p.config.clv.segment_by {
        ClvSegmentBy::None => rfm.with_column(lit("all").alias("segment")),
        ClvSegmentBy::Segment => rfm.join(
            i.accounts
                .clone()
                .select([col("account_id"), col("segment")])
                .unique(Some(cols(["account_id"])), UniqueKeepStrategy::Any),
            [col("account_id")],
            [col("account_id")],
            JoinArgs::new(JoinType::Left),
        ),
        ClvSegmentBy::Source => {
            // The account's first lead (created_at, then lead_id) at or before as_of.
            let first_lead = i
                .leads
                .clone()
                .filter(col("account_id").is_not_null())
                .group_by([col("account_id")])
                .agg([col("source")
                    .sort_by([col("created_at"), col("lead_id")], SortMultipleOptions::default())
                    .first()
                    .alias("segment")]);
            rfm.join(
                first_lead,
                [col("account_id")],
                [col("account_id")],
                JoinArgs::new(JoinType::Left),
            )
        }
    }
}

/// One customer's row of the RFM summary, in the model's time unit.
#[derive(Debug, Clone)]
struct Row {
    account_id: String,
    segment: Option<String>,
    customer: Customer,
    monetary: Option<f64>,
}

/// The fits of one segment.
struct SegmentFit {
    segment: Option<String>,
    n_customers: usize,
    n_spenders: usize,
    bg: Result<Fit<BgNbd>, FitError>,
    gg: Result<Fit<GammaGamma>, FitError>,
}

fn collect_rows(i: &Inputs, p: &Params) -> PolarsResult<Vec<Row>> {
    let started = std::time::Instant::now();
    // Shared: clv_predictive and clv_model both read it.
    let df = i
        .shared("clv_rfm", || {
            Ok(rfm_days(i, p).select([
                col("account_id"),
                col("segment").cast(DataType::String),
                col("frequency"),
                col("recency_days"),
                col("t_days"),
                col("monetary_value"),
            ]))
        })?
        .collect()?;
    let unit = p.config.clv.time_unit.days();
    let ids = df.column("account_id")?.str()?.clone();
    let seg = df.column("segment")?.str()?.clone();
    let freq = df.column("frequency")?.u32()?.clone();
    let rec = df.column("recency_days")?.cast(&DataType::Int64)?.i64()?.clone();
    let age = df.column("t_days")?.cast(&DataType::Int64)?.i64()?.clone();
    let mon = df.column("monetary_value")?.f64()?.clone();
    let mut rows: Vec<Row> = Vec::with_capacity(df.height());
    for k in 0..df.height() {
        let (Some(id), Some(x), Some(r), Some(t)) = (ids.get(k), freq.get(k), rec.get(k), age.get(k)) else {
            continue;
        };
        rows.push(Row {
            account_id: id.to_string(),
            segment: seg.get(k).map(str::to_string),
            customer: Customer {
                x,
                t_x: r as f64 / unit,
                t: t as f64 / unit,
            },
            monetary: mon.get(k),
        });
    }
    // polars' group_by order varies between runs: sort so the fits see the same input order.
    rows.sort_unstable_by(|a, b| a.account_id.cmp(&b.account_id));
    tracing::debug!(
        customers = rows.len(),
        ms = started.elapsed().as_millis() as u64,
        "CLV: RFM collected"
    );
    Ok(rows)
}

/// The last fits, keyed by a hash of their input (the RFM rows and the CLV settings), so
/// clv_model and clv_predictive in one run fit once.
static LAST_FITS: Mutex<Option<(u64, Arc<Vec<SegmentFit>>)>> = Mutex::new(None);

/// [`fit_segments`], reusing the previous result when the input is identical.
fn fits_for(rows: &[Row], p: &Params) -> Arc<Vec<SegmentFit>> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for r in rows {
        (&r.account_id, &r.segment, r.customer.x).hash(&mut h);
        (
            r.customer.t_x.to_bits(),
            r.customer.t.to_bits(),
            r.monetary.map(f64::to_bits),
        )
            .hash(&mut h);
    }
    format!("{:?}", p.config.clv).hash(&mut h);
    let key = h.finish();
    if let Some((k, fits)) = LAST_FITS.lock().ok().and_then(|g| g.clone())
        && k == key
    {
        return fits;
    }
    let started = std::time::Instant::now();
    let fits = Arc::new(fit_segments(rows, p));
    for f in fits.iter() {
        let evals = |r: Result<usize, &FitError>| r.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string());
        tracing::debug!(
            segment = f.segment.as_deref().unwrap_or("(null)"),
            bg_nbd = evals(f.bg.as_ref().map(|b| b.evals)),
            gamma_gamma = evals(f.gg.as_ref().map(|g| g.evals)),
            "CLV: log-likelihood evaluations"
        );
    }
    tracing::debug!(
        segments = fits.len(),
        ms = started.elapsed().as_millis() as u64,
        "CLV: models fitted"
    );
    if let Ok(mut g) = LAST_FITS.lock() {
        *g = Some((key, fits.clone()));
    }
    fits
}

/// Fits BG/NBD and Gamma-Gamma per segment, in parallel. Segments in a stable order (by name,
/// null first).
fn fit_segments(rows: &[Row], p: &Params) -> Vec<SegmentFit> {
    let mut groups: HashMap<Option<&str>, Vec<usize>> = HashMap::new();
    for (k, r) in rows.iter().enumerate() {
        groups.entry(r.segment.as_deref()).or_default().push(k);
    }
    if groups.is_empty() && p.config.clv.segment_by == ClvSegmentBy::None {
        groups.insert(Some("all"), Vec::new());
    }
    let mut groups: Vec<(Option<&str>, Vec<usize>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    groups
        .into_par_iter()
        .map(|(segment, idx)| {
            let customers: Vec<Customer> = idx.iter().map(|&k| rows[k].customer).collect();
            let spend: Vec<(u32, f64)> = idx
                .iter()
                .filter_map(|&k| rows[k].monetary.map(|m| (rows[k].customer.x, m)))
                .collect();
            let (bg, gg) = rayon::join(|| BgNbd::fit(&customers), || GammaGamma::fit(&spend));
            let label = segment.unwrap_or("(null)");
            if let Err(e) = &bg {
                tracing::warn!(segment = label, model = "bg_nbd", "CLV model not fitted: {e}");
            }
            if let Err(e) = &gg {
                tracing::warn!(segment = label, model = "gamma_gamma", "CLV model not fitted: {e}");
            }
            SegmentFit {
                segment: segment.map(str::to_string),
                n_customers: customers.len(),
                n_spenders: spend
                    .iter()
                    .filter(|(x, m)| *x > 0 && *m > 0.0 && m.is_finite())
                    .count(),
                bg,
                gg,
            }
        })
        .collect()
}

fn clv_model(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let rows = collect_rows(i, p)?;
    let fits = fits_for(&rows, p);
    let (mut model, mut segment, mut param) = (Vec::new(), Vec::new(), Vec::new());
    let (mut value, mut se, mut ll, mut n) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for f in fits.iter() {
        let mut push = |name: &'static str, names: &[&'static str], est: Estimates<'_>, count: usize| {
            for (k, pn) in names.iter().enumerate() {
                model.push(name);
                segment.push(f.segment.clone());
                param.push(*pn);
                value.push(est.map(|e| e.0[k]));
                se.push(est.and_then(|e| e.1[k]));
                ll.push(est.map(|e| e.2));
                n.push(count as u32);
            }
        };
        let bg = f.bg.as_ref().ok().map(|b| (&b.estimates, &b.std_err, b.log_likelihood));
        push("bg_nbd", BgNbd::NAMES, bg, f.n_customers);
        let gg = f.gg.as_ref().ok().map(|g| (&g.estimates, &g.std_err, g.log_likelihood));
        push("gamma_gamma", GammaGamma::NAMES, gg, f.n_spenders);
    }
    let df = df!(
        "model" => model,
        "segment" => segment,
        "param" => param,
        "value" => value,
        "std_err" => se,
        "log_likelihood" => ll,
        "n_customers" => n,
    )?;
    Ok(df.lazy().with_column(as_of_col(p)))
}

/// A fit's estimates, standard errors and log-likelihood (None: not fitted).
type Estimates<'a> = Option<(&'a Vec<f64>, &'a Vec<Option<f64>>, f64)>;

/// One customer's predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub p_alive: f64,
    /// E[X(H·u)]
    pub expected_purchases: f64,
    /// Σ_{i=1..H} (E[X(i·u)] − E[X((i−1)·u)]) / (1+d)^i: multiply by the expected spend per
    /// purchase to get the CLV.
    pub discounted_purchases: f64,
}

/// The BG/NBD side of the CLV of a customer `c`: P(alive), expected purchases over `months`
/// months of `month` time units each, and the discounted purchases of the CLV sum at monthly
/// rate `rate`. NaN values when the expectation cannot be evaluated.
pub fn predict(model: &BgNbd, c: &Customer, months: u32, month: f64, rate: f64) -> Prediction {
    let p_alive = model.p_alive(c.x, c.t_x, c.t);
    let (mut prev, mut discounted, mut factor) = (0.0, 0.0, 1.0);
    for i in 1..=months {
        let e = p_alive * model.expected_purchases_if_alive(c.x, c.t, i as f64 * month);
        factor /= 1.0 + rate;
        discounted += (e - prev) * factor;
        prev = e;
    }
    Prediction {
        p_alive,
        expected_purchases: prev,
        discounted_purchases: discounted,
    }
}

fn clv_predictive(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let rows = collect_rows(i, p)?;
    let fits = fits_for(&rows, p);
    let clv = &p.config.clv;
    let month = DAYS_PER_MONTH / clv.time_unit.days();
    let by_segment: HashMap<Option<&str>, &SegmentFit> = fits.iter().map(|f| (f.segment.as_deref(), f)).collect();
    // Customers with the same history share their BG/NBD predictions: compute each distinct
    // (segment, x, t_x, T) once, in parallel.
    let mut distinct: HashMap<Key<'_>, Option<Prediction>> = HashMap::new();
    for r in &rows {
        distinct.entry(key(r)).or_insert(None);
    }
    let keys: Vec<Key<'_>> = distinct.keys().copied().collect();
    let started = std::time::Instant::now();
    let n_keys = keys.len();
    let computed: Vec<(Key<'_>, Option<Prediction>)> = keys
        .into_par_iter()
        .map(|k| {
            let pred = by_segment.get(&k.0).and_then(|f| f.bg.as_ref().ok()).map(|fit| {
                let c = Customer {
                    x: k.1,
                    t_x: f64::from_bits(k.2),
                    t: f64::from_bits(k.3),
                };
                predict(&fit.params, &c, clv.horizon_months, month, clv.monthly_discount_rate)
            });
            (k, pred)
        })
        .collect();
    distinct.extend(computed);
    tracing::debug!(
        histories = n_keys,
        ms = started.elapsed().as_millis() as u64,
        "CLV: predictions computed"
    );
    let finite = |v: f64| Some(v).filter(|v| v.is_finite());
    let n = rows.len();
    let (mut p_alive, mut expected, mut avg_value, mut value) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut unevaluated = 0usize;
    for r in &rows {
        let pred = distinct.get(&key(r)).copied().flatten();
        let avg = by_segment
            .get(&r.segment.as_deref())
            .and_then(|f| f.gg.as_ref().ok())
            .and_then(|g| g.params.expected_average_value(r.customer.x, r.monetary.unwrap_or(0.0)));
        let e = pred.and_then(|q| finite(q.expected_purchases));
        if pred.is_some() && e.is_none() {
            unevaluated += 1;
        }
        p_alive.push(pred.and_then(|q| finite(q.p_alive)));
        expected.push(e);
        avg_value.push(avg);
        value.push(match (pred, avg) {
            (Some(q), Some(m)) => finite(q.discounted_purchases * m),
            _ => None,
        });
    }
    if unevaluated > 0 {
        tracing::warn!(
            customers = unevaluated,
            "CLV: expected purchases could not be evaluated (null)"
        );
    }
    let df = df!(
        "account_id" => rows.iter().map(|r| r.account_id.as_str()).collect::<Vec<_>>(),
        "frequency" => rows.iter().map(|r| r.customer.x).collect::<Vec<_>>(),
        "recency" => rows.iter().map(|r| r.customer.t_x).collect::<Vec<_>>(),
        "t" => rows.iter().map(|r| r.customer.t).collect::<Vec<_>>(),
        "monetary_value" => rows.iter().map(|r| r.monetary).collect::<Vec<_>>(),
        "p_alive" => p_alive,
        "expected_purchases" => expected,
        "expected_avg_value" => avg_value,
        "clv" => value,
    )?;
    Ok(df.lazy().with_column(as_of_col(p)))
}

/// A customer's history within its segment: (segment, x, t_x bits, T bits).
type Key<'a> = (Option<&'a str>, u32, u64, u64);

fn key(r: &Row) -> Key<'_> {
    (
        r.segment.as_deref(),
        r.customer.x,
        r.customer.t_x.to_bits(),
        r.customer.t.to_bits(),
    )
}
