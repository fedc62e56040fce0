//! Rep activity: calls, connects, emails, meetings, visits and new contacts against targets.

use crate::kpi::Kpi;

pub fn kpis() -> Vec<Kpi> {
    vec![]
}
