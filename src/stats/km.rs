//! Kaplan-Meier (being written).
