//! The customers and revenue family (`src/kpi/customers.rs`): orders, revenue, historical and
//! predictive CLV, retention (one module per hand-checked fixture), and the customer-side deal
//! KPIs on the deals fixture of `kpi_funnel/pipeline.rs` (its table is there).

pub(crate) mod clv;
pub(crate) mod revenue;

use crate::fixtures::rows;
use crate::kpi_funnel::pipeline::run;

#[test]
fn new_vs_existing_customers() {
    let df = run("new_vs_existing");
    assert_eq!(
        rows(
            &df,
            &[
                "as_of",
                "period_start",
                "customer_type",
                "deals",
                "won_deals",
                "won_amount"
            ]
        ),
        [
            "2024-03-31|2023-09-01|new|1|0|0.0000",
            "2024-03-31|2023-10-01|new|1|0|0.0000",
            // d6: a4's only paid order is a refund.
            "2024-03-31|2023-12-01|new|1|0|0.0000",
            // d3: a2 paid an order on 2023-12-05. d10: a1's first win (d1) came after it was created.
            "2024-03-31|2024-01-01|existing|1|0|0.0000",
            "2024-03-31|2024-01-01|new|2|0|0.0000",
            // d2 (a1 won d1 on 02-10) and d5; d4: a3's order is paid after as_of.
            "2024-03-31|2024-02-01|existing|2|0|0.0000",
            "2024-03-31|2024-02-01|new|1|1|5000.0000",
            "2024-03-31|2024-03-01|existing|1|1|10000.0000",
            "2024-03-31|2024-03-01|new|1|1|55000.0000",
        ]
    );
}

#[test]
fn lost_reengagement_windows() {
    let df = run("lost_reengagement");
    let cols = [
        "as_of",
        "opportunity_id",
        "account_id",
        "owner_id",
        "loss_reason",
        "lost_at",
        "follow_up_from",
        "follow_up_until",
        "status",
    ];
    // d3 (window opens 05-20, in 50 days) and d5 (06-13) are left out.
    assert_eq!(
        rows(&df, &cols),
        [
            "2024-03-31|d8|a5|r2|no_budget|2023-11-15|2024-02-13|2024-05-13|due",
            "2024-03-31|d9|a6|r3|null|2024-01-05|2024-04-04|2024-07-03|upcoming",
        ]
    );
}
