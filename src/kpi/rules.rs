//! The predicates every family shares, written once: a deal's status as of the run (the
//! `status` column of `Inputs::deals()`, rebuilt from stage events up to as_of) and whether an
//! order row is a refund.

use polars::prelude::*;

/// The deal is won as of the run.
pub fn is_won() -> Expr {
    col("status").eq(lit("won"))
}

/// The deal is lost as of the run.
pub fn is_lost() -> Expr {
    col("status").eq(lit("lost"))
}

/// The deal is won or lost as of the run.
pub fn is_closed() -> Expr {
    is_won().or(is_lost())
}

/// The deal is open as of the run.
pub fn is_open() -> Expr {
    col("status").eq(lit("open"))
}

/// The order row is a refund (`is_refund = true`; a null flag is a sale). Refunds are their own
/// rows, dated when recorded, and count negatively where they are recorded.
pub fn is_refund() -> Expr {
    col("is_refund").fill_null(lit(false))
}
