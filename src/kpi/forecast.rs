//! Forecast vs actual: the reps' submitted forecasts against the weighted pipeline and the won
//! amount, per period and owner.

use polars::prelude::*;

use crate::kpi::periods::{period_start, period_start_of_date};
use crate::kpi::pipeline::{current_period_start, day_start, open_at};
use crate::kpi::{Inputs, Kpi, Params, as_of_col, ratio, stable_sum};

pub fn kpis() -> Vec<Kpi> {
    vec![Kpi {
        name: "forecast_vs_actual",
        family: "funnel and pipeline",
        grain: "one row per period per owner with a forecast, pipeline forecast or won amount, up to as_of's \
            period",
        definition: "Per period (the run grain, cut in the configured timezone) and owner, for periods up to \
            as_of's: submitted_forecast = the owner's latest forecast of the run grain for the period \
            submitted at or before as_of, category commit (a forecast without a category counts as commit; \
            its period_start is mapped to the period containing it), in base currency, null if none; \
            pipeline_forecast = sum of amount x stage probability of the deals open when the period \
            starts (at the last instant before it, i.e. the previous period's pipeline_snapshot, \
            reconstructed from stage events; the stage at that instant gives the probability, a deal \
            without a stage event yet counts 0) whose expected_close_date (current value) falls in the \
            period; actual = base amount of the deals won \
            in the period (status at as_of); attainment = actual / submitted_forecast and error = actual - \
            submitted_forecast (null without a forecast, attainment null for a zero forecast).",
        version: 1,
        columns: || {
            vec![
                ("as_of", DataType::Date),
                ("period_start", DataType::Date),
                ("owner_id", DataType::String),
                ("submitted_forecast", DataType::Float64),
                ("pipeline_forecast", DataType::Float64),
                ("actual", DataType::Float64),
                ("attainment", DataType::Float64),
                ("error", DataType::Float64),
            ]
        },
        key: &["period_start", "owner_id"],
        build: forecast_vs_actual,
    }]
}

fn forecast_vs_actual(i: &Inputs, p: &Params) -> PolarsResult<LazyFrame> {
    let cfg = &p.config;
    let cur = current_period_start(p);
    let keys = [col("period_start"), col("owner_id")];

    let submitted = i
        .forecasts
        .clone()
        .filter(
            col("grain")
                .eq(lit(p.grain.name()))
                .and(col("category").eq(lit("commit")).or(col("category").is_null())),
        )
        .with_column(period_start_of_date(col("period_start"), p.grain, cfg).alias("period_start"))
        .filter(col("period_start").lt_eq(cur.clone()))
        .group_by(keys.clone())
        .agg([col("amount_base")
            .sort_by(
                [col("submitted_at"), col("amount_base")],
                SortMultipleOptions::default(),
            )
            .last()
            .alias("submitted_forecast")]);

    // Each deal is looked at once: at the start of the period its expected close falls in.
    let expected = i
        .deals()?
        .filter(col("expected_close_date").is_not_null())
        .select([
            col("opportunity_id"),
            col("owner_id"),
            col("created_at"),
            col("closed_at"),
            col("amount_base"),
            period_start_of_date(col("expected_close_date"), p.grain, cfg).alias("period_start"),
        ])
        .filter(col("period_start").lt_eq(cur))
        .with_column(
            day_start(col("period_start"), p)
                .dt()
                .offset_by(lit("-1us"))
                .alias("__t"),
        );
    let pipeline = open_at(expected, i, p)?
        .group_by(keys.clone())
        .agg([stable_sum(col("amount_base") * col("__probability")).alias("pipeline_forecast")]);

    let actual = i
        .deals()?
        .filter(col("status").eq(lit("won")))
        .with_column(period_start(col("closed_at"), p.grain, cfg).alias("period_start"))
        .group_by(keys.clone())
        .agg([stable_sum(col("amount_base")).alias("actual")]);

    let rows = concat(
        [
            submitted.clone().select(keys.clone()),
            pipeline.clone().select(keys.clone()),
            actual.clone().select(keys.clone()),
        ],
        UnionArgs::default(),
    )?
    .unique(None, UniqueKeepStrategy::Any);
    let left = || JoinArgs::new(JoinType::Left);
    Ok(rows
        .join(submitted, keys.clone(), keys.clone(), left())
        .join(pipeline, keys.clone(), keys.clone(), left())
        .join(actual, keys.clone(), keys, left())
        .with_columns([
            col("pipeline_forecast").fill_null(lit(0.0)),
            col("actual").fill_null(lit(0.0)),
        ])
        .with_columns([
            ratio(col("actual"), col("submitted_forecast")).alias("attainment"),
            (col("actual") - col("submitted_forecast")).alias("error"),
            as_of_col(p),
        ]))
}
