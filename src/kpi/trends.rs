//! Trends: the headline series per period with previous period, same period last year and trailing 12.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
