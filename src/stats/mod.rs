//! Statistics used by the KPIs: pure functions, unit-tested.

pub mod bgnbd;
pub mod gamma_gamma;
pub mod km;
pub mod optim;
pub mod special;
