//! Predictive customer lifetime value (BG/NBD + Gamma-Gamma) and its fitted model.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
