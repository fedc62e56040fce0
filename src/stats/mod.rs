//! Statistics used by the KPIs: pure functions, unit-tested.

pub mod km;
