//! Order revenue per period and dimension; historical customer lifetime value.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
