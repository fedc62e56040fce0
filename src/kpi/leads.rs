//! Lead KPIs: lead_volume, lead_velocity_rate, lead_conversion, cohort_conversion, campaign_performance.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
