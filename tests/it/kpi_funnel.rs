//! The funnel and pipeline family (`src/kpi/funnel.rs`): stage funnel and durations, the
//! pipeline and forecasts, closed deals. One module per hand-checked fixture.

pub(crate) mod deals;
pub(crate) mod history;
pub(crate) mod pipeline;
pub(crate) mod pipelines;
pub(crate) mod stages;
