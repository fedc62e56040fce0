//! Hand-computed fixtures.
