//! Rules that look across columns and tables (README, "What gets rejected"): negative amounts, closed deals
//! without or before their dates, unknown stages, stage events before their deal, references
//! to unknown deals, and currency conversion to the base currency.

use std::collections::HashMap;

use chrono_tz::Tz;
use polars::prelude::*;

use crate::config::Config;
use crate::ingest::convert::{Reasons, shown};
use crate::schema::{Rule, TableDef};
use crate::timefmt;

/// Exchange rates by currency, sorted by date; a rate applies from its date on.
#[derive(Debug, Clone, Default)]
pub struct Fx {
    base: String,
    rates: HashMap<String, Vec<(i32, f64)>>,
}

impl Fx {
    pub fn from_table(base: &str, fx_rates: &DataFrame) -> PolarsResult<Fx> {
        let cur = fx_rates.column("currency")?.str()?.clone();
        let days = fx_rates.column("date")?.cast(&DataType::Int32)?;
        let rate = fx_rates.column("rate_to_base")?.f64()?.clone();
        let mut rates: HashMap<String, Vec<(i32, f64)>> = HashMap::new();
        for ((c, d), r) in cur.iter().zip(days.i32()?.iter()).zip(rate.iter()) {
            if let (Some(c), Some(d), Some(r)) = (c, d, r) {
                rates.entry(c.to_string()).or_default().push((d, r));
            }
        }
        for v in rates.values_mut() {
            v.sort_by_key(|(d, _)| *d);
        }
        Ok(Fx {
            base: base.to_string(),
            rates,
        })
    }

    /// Value in base currency of one unit of `currency` on local day `day` (the latest rate
    /// on or before it; with no day, the latest rate).
    pub fn rate(&self, currency: &str, day: Option<i32>) -> Option<f64> {
        if currency == self.base {
            return Some(1.0);
        }
        let v = self.rates.get(currency)?;
        match day {
            None => v.last().map(|(_, r)| *r),
            Some(day) => {
                let i = v.partition_point(|(d, _)| *d <= day);
                (i > 0).then(|| v[i - 1].1)
            }
        }
    }
}

/// Deals known to the store after this batch: id -> created_at (µs).
pub type Deals = HashMap<String, i64>;

pub fn deals_from(opportunities: &DataFrame) -> PolarsResult<Deals> {
    let ids = opportunities.column("opportunity_id")?.str()?.clone();
    let created = opportunities.column("created_at")?.cast(&DataType::Int64)?;
    Ok(ids
        .iter()
        .zip(created.i64()?.iter())
        .filter_map(|(id, c)| Some((id?.to_string(), c?)))
        .collect())
}

pub struct Context<'a> {
    pub config: &'a Config,
    pub tz: Tz,
    pub deals: &'a Deals,
    pub fx: &'a Fx,
    /// The stages a stage event may name: the store's stage list, else the config's.
    pub stages: &'a [String],
}

fn micros(df: &DataFrame, name: &str) -> PolarsResult<Int64Chunked> {
    Ok(df.column(name)?.cast(&DataType::Int64)?.i64()?.clone())
}

fn fmt_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or_else(|| us.to_string(), |d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Applies the table's rules to the typed frame; returns the derived base-currency column
/// for tables with money.
pub fn apply(def: &TableDef, df: &DataFrame, reasons: &mut Reasons, ctx: &Context) -> PolarsResult<Option<Column>> {
    let n = df.height();
    match def.name {
        "opportunities" => {
            let status = df.column("status")?.str()?.clone();
            let created = micros(df, "created_at")?;
            let closed = micros(df, "closed_at")?;
            for i in 0..n {
                let s = status.get(i);
                let (c, cl) = (created.get(i), closed.get(i));
                if matches!(s, Some("won" | "lost")) && cl.is_none() {
                    reasons.set(
                        i,
                        Rule::ClosedWithoutDate,
                        format!("status {} without closed_at", s.unwrap_or_default()),
                    );
                }
                if let (Some(c), Some(cl)) = (c, cl)
                    && cl < c
                {
                    reasons.set(
                        i,
                        Rule::ClosedBeforeCreated,
                        format!("closed_at {} is before created_at {}", fmt_us(cl), fmt_us(c)),
                    );
                }
            }
        }
        "stage_events" => {
            let deal = df.column("opportunity_id")?.str()?.clone();
            let stage = df.column("stage")?.str()?.clone();
            let entered = micros(df, "entered_at")?;
            let names = ctx.stages;
            for i in 0..n {
                if let Some(s) = stage.get(i)
                    && !names.iter().any(|n| n == s)
                {
                    reasons.set(
                        i,
                        Rule::UnknownStage,
                        format!(
                            "unknown stage {} in `stage` (configured stages: {})",
                            shown(s),
                            names.join(", ")
                        ),
                    );
                }
                let Some(d) = deal.get(i) else { continue };
                match ctx.deals.get(d) {
                    None => reasons.set(
                        i,
                        Rule::UnknownDeal,
                        format!("reference to an unknown deal: opportunity_id {}", shown(d)),
                    ),
                    Some(&created) => {
                        if let Some(e) = entered.get(i)
                            && e < created
                        {
                            reasons.set(
                                i,
                                Rule::EventBeforeCreated,
                                format!(
                                    "stage event at {} is before its deal {} was created ({})",
                                    fmt_us(e),
                                    shown(d),
                                    fmt_us(created)
                                ),
                            );
                        }
                    }
                }
            }
        }
        "orders" | "activities" => {
            let deal = df.column("opportunity_id")?.str()?.clone();
            for (i, d) in deal.iter().enumerate() {
                if let Some(d) = d
                    && !ctx.deals.contains_key(d)
                {
                    reasons.set(
                        i,
                        Rule::UnknownDeal,
                        format!("reference to an unknown deal: opportunity_id {}", shown(d)),
                    );
                }
            }
        }
        "targets" => {
            for (i, v) in df.column("value")?.f64()?.iter().enumerate() {
                if let Some(v) = v.filter(|v| *v < 0.0) {
                    reasons.set(i, Rule::NegativeAmount, format!("negative target {v} in `value`"));
                }
            }
        }
        "fx_rates" => {
            for (i, v) in df.column("rate_to_base")?.f64()?.iter().enumerate() {
                if let Some(v) = v.filter(|v| *v <= 0.0) {
                    reasons.set(
                        i,
                        Rule::InvalidValue,
                        format!("invalid value in `rate_to_base`: {v} (a rate must be positive)"),
                    );
                }
            }
        }
        _ => {}
    }
    let Some(money) = def.money else { return Ok(None) };
    let amount = df.column(money.amount)?.f64()?.clone();
    let currency = df.column(money.currency)?.str()?.clone();
    let refund = if def.name == "orders" {
        Some(df.column("is_refund")?.bool()?.clone())
    } else {
        None
    };
    let mut rate_day = Int32Chunked::full_null("day".into(), n);
    for c in money.rate_dates {
        let col = df.column(c)?;
        let days: Int32Chunked = match col.dtype() {
            DataType::Date => col.cast(&DataType::Int32)?.i32()?.clone(),
            _ => micros(df, c)?
                .iter()
                .map(|us| us.and_then(|us| timefmt::local_day(us, ctx.tz)))
                .collect(),
        };
        rate_day = rate_day.iter().zip(days.iter()).map(|(a, b)| a.or(b)).collect();
    }
    let base: Float64Chunked = (0..n)
        .map(|i| {
            let a = amount.get(i)?;
            if a < 0.0 && refund.as_ref().is_none_or(|r| r.get(i) != Some(true)) {
                let hint = if refund.is_some() {
                    " (orders may be negative only with is_refund = true)"
                } else {
                    ""
                };
                reasons.set(
                    i,
                    Rule::NegativeAmount,
                    format!("negative amount {a} in `{}`{hint}", money.amount),
                );
            }
            let cur = currency.get(i).unwrap_or(ctx.config.base_currency.as_str());
            match ctx.fx.rate(cur, rate_day.get(i)) {
                Some(r) => Some(a * r),
                // A deal still counts in win rates, funnels and cycles without a base amount
                // (counted in the report, as a deal without an amount is).
                None if def.name == "opportunities" => None,
                None => {
                    if reasons.is_ok(i) {
                        let on = rate_day
                            .get(i)
                            .map_or_else(String::new, |d| format!(" on or before {}", timefmt::date_from_days(d)));
                        reasons.set(
                            i,
                            Rule::NoFxRate,
                            format!(
                                "no fx rate for {cur} to {}{on}; add it to fx_rates",
                                ctx.config.base_currency
                            ),
                        );
                    }
                    None
                }
            }
        })
        .collect();
    Ok(Some(base.with_name(money.base.into()).into_column()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{convert, mapping};
    use crate::schema;

    /// Rule code per row after conversion and the table rules, for rows given as text.
    fn rules_of(
        def: &TableDef,
        header: &[&str],
        rows: &[&[&str]],
        deals: &Deals,
        fx: &Fx,
    ) -> Vec<Option<&'static str>> {
        let cols: Vec<Column> = header
            .iter()
            .enumerate()
            .map(|(j, h)| {
                let v: Vec<Option<&str>> = rows.iter().map(|r| Some(r[j]).filter(|x| !x.is_empty())).collect();
                Column::new((*h).into(), v)
            })
            .collect();
        let raw = DataFrame::new(rows.len(), cols).unwrap();
        let names: Vec<String> = header.iter().map(|h| h.to_string()).collect();
        let cmap = mapping::map_columns(def, &names, None);
        let mut reasons = Reasons::new(rows.len());
        let config = Config::default();
        let opts = crate::ingest::parse::ParseOptions::new(chrono_tz::UTC);
        let typed = convert::convert(def, &raw, &cmap, None, &opts, &mut reasons, &mut Default::default())
            .map_err(|(_, e)| e)
            .unwrap();
        let stages: Vec<String> = config.stage_names().iter().map(|s| s.to_string()).collect();
        let ctx = Context {
            config: &config,
            tz: chrono_tz::UTC,
            deals,
            fx,
            stages: &stages,
        };
        apply(def, &typed, &mut reasons, &ctx).unwrap();
        reasons
            .0
            .iter()
            .map(|r| r.as_ref().map(|(rule, _)| rule.code()))
            .collect()
    }

    fn usd_only() -> Fx {
        Fx {
            base: "USD".into(),
            rates: HashMap::new(),
        }
    }

    #[test]
    fn opportunity_rules() {
        let h = [
            "opportunity_id",
            "account_id",
            "created_at",
            "owner_id",
            "amount",
            "currency",
            "status",
            "closed_at",
        ];
        let rows: &[&[&str]] = &[
            &["O1", "A", "2024-01-02", "R", "10", "", "won", "2024-01-03"],
            &["O2", "A", "2024-01-02", "R", "10", "", "open", ""],
            &["O3", "", "2024-01-02", "R", "10", "", "open", ""],
            &["O4", "A", "2024-01-02", "R", "ten", "", "open", ""],
            &["O5", "A", "2024-01-02", "R", "10", "", "Pending", ""],
            &["O6", "A", "2024-01-02", "R", "-1", "", "open", ""],
            &["O7", "A", "2024-01-02", "R", "10", "", "lost", ""],
            &["O8", "A", "2024-01-02", "R", "10", "", "won", "2024-01-01"],
            &["O9", "A", "2024-01-02", "R", "10", "GBP", "open", ""],
            &["O10", "A", "2024-01-02", "R", "10", "usd", "WON", "2024-01-02"],
            &["O11", "A", "2024-01-02", "R", "10", "US", "open", ""],
        ];
        let got = rules_of(&schema::OPPORTUNITIES, &h, rows, &Deals::new(), &usd_only());
        assert_eq!(
            got,
            [
                None,
                None,
                None,
                Some("unparseable"),
                Some("invalid_value"),
                Some("negative_amount"),
                Some("closed_without_date"),
                Some("closed_before_created"),
                None,
                None,
                Some("invalid_value"),
            ]
        );
    }

    #[test]
    fn stage_event_rules() {
        let deals: Deals = [("O1".to_string(), 1_704_153_600_000_000)].into(); // 2024-01-02T00:00Z
        let h = ["opportunity_id", "stage", "entered_at"];
        let rows: &[&[&str]] = &[
            &["O1", "prospecting", "2024-01-02"],
            &["O1", "limbo", "2024-01-03"],
            &["O2", "prospecting", "2024-01-03"],
            &["O1", "proposal", "2024-01-01T23:59:59Z"],
            &["O1", "proposal", "soon"],
        ];
        let got = rules_of(&schema::STAGE_EVENTS, &h, rows, &deals, &usd_only());
        assert_eq!(
            got,
            [
                None,
                Some("unknown_stage"),
                Some("unknown_deal"),
                Some("event_before_created"),
                Some("unparseable")
            ]
        );
    }

    #[test]
    fn order_and_activity_rules() {
        let deals: Deals = [("O1".to_string(), 0)].into();
        let h = [
            "order_id",
            "account_id",
            "ordered_at",
            "amount",
            "opportunity_id",
            "is_refund",
        ];
        let rows: &[&[&str]] = &[
            &["X1", "A", "2024-01-02", "5", "O1", ""],
            &["X2", "A", "2024-01-02", "-5", "", "yes"],
            &["X3", "A", "2024-01-02", "-5", "", "no"],
            &["X4", "A", "2024-01-02", "5", "O2", ""],
            &["X5", "A", "2024-01-02", "5", "", "maybe"],
        ];
        let got = rules_of(&schema::ORDERS, &h, rows, &deals, &usd_only());
        assert_eq!(
            got,
            [
                None,
                None,
                Some("negative_amount"),
                Some("unknown_deal"),
                Some("unparseable")
            ]
        );

        let h = [
            "activity_id",
            "owner_id",
            "kind",
            "occurred_at",
            "opportunity_id",
            "duration_s",
        ];
        let rows: &[&[&str]] = &[
            &["C1", "R", "Call", "2024-01-02", "O1", "30"],
            &["C2", "R", "fax", "2024-01-02", "", ""],
            &["C3", "R", "email", "2024-01-02", "O9", ""],
            &["C4", "R", "email", "2024-01-02", "", "1.5"],
        ];
        let got = rules_of(&schema::ACTIVITIES, &h, rows, &deals, &usd_only());
        assert_eq!(
            got,
            [None, Some("invalid_value"), Some("unknown_deal"), Some("unparseable")]
        );
    }

    #[test]
    fn target_and_fx_rules() {
        let h = ["scope", "scope_kind", "period_start", "grain", "metric", "value"];
        let rows: &[&[&str]] = &[
            &["R1", "rep", "2024-01-01", "month", "revenue", "100"],
            &["R1", "rep", "2024-01-01", "fortnight", "revenue", "100"],
            &["R1", "rep", "2024-01-01", "month", "revenue", "-1"],
        ];
        let got = rules_of(&schema::TARGETS, &h, rows, &Deals::new(), &usd_only());
        assert_eq!(got, [None, Some("invalid_value"), Some("negative_amount")]);
        let h = ["currency", "date", "rate_to_base"];
        let rows: &[&[&str]] = &[
            &["EUR", "2024-01-01", "1.1"],
            &["EUR", "2024-01-02", "0"],
            &["EUR", "", "1.1"],
        ];
        let got = rules_of(&schema::FX_RATES, &h, rows, &Deals::new(), &usd_only());
        assert_eq!(got, [None, Some("invalid_value"), Some("missing_required")]);
    }

    #[test]
    fn fx_takes_latest_rate_on_or_before_the_day() {
        let df = df!(
            "currency" => ["EUR", "EUR", "GBP"],
            "date" => [10i32, 20, 15],
            "rate_to_base" => [1.1, 1.2, 1.3],
        )
        .unwrap();
        let mut df = df;
        df.with_column(df.column("date").unwrap().cast(&DataType::Date).unwrap())
            .unwrap();
        let fx = Fx::from_table("USD", &df).unwrap();
        assert_eq!(fx.rate("USD", Some(0)), Some(1.0));
        assert_eq!(fx.rate("EUR", Some(9)), None);
        assert_eq!(fx.rate("EUR", Some(10)), Some(1.1));
        assert_eq!(fx.rate("EUR", Some(19)), Some(1.1));
        assert_eq!(fx.rate("EUR", Some(25)), Some(1.2));
        assert_eq!(fx.rate("EUR", None), Some(1.2));
        assert_eq!(fx.rate("SEK", Some(25)), None);
    }
}
