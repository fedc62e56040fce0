//! Customer retention by acquisition cohort, and churn.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
