//! (being written)

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
