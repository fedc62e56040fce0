//! The 11 canonical tables (README, "Canonical files"): names, column kinds, required columns, primary keys,
//! allowed values and the column each table is partitioned by in the store.
//!
//! Everything about a table that ingest, the store and `validate` need is declared here,
//! once; the rules that span columns or tables live in `ingest::rules`.

use polars::prelude::{DataType, TimeUnit, TimeZone};

/// Logical kind of a canonical column; `dtype()` gives its stored polars type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Str,
    Float,
    Int,
    Bool,
    /// Instant, stored as `Datetime(us, UTC)`.
    Timestamp,
    /// Calendar date local to the configured timezone.
    Date,
    /// A length of time in whole seconds, stored as `Int64`; read from a number of seconds or
    /// from `H:MM[:SS]`.
    Duration,
}

impl Kind {
    pub fn dtype(self) -> DataType {
        match self {
            Kind::Str => DataType::String,
            Kind::Float => DataType::Float64,
            Kind::Int | Kind::Duration => DataType::Int64,
            Kind::Bool => DataType::Boolean,
            Kind::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
            Kind::Date => DataType::Date,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Str => "string",
            Kind::Float => "number",
            Kind::Int => "integer",
            Kind::Bool => "boolean",
            Kind::Timestamp => "timestamp",
            Kind::Date => "date",
            Kind::Duration => "duration (seconds or H:MM[:SS])",
        }
    }
}

/// One column of a canonical table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
    /// Allowed values (lower-case) for enumerated string columns; empty = any.
    pub allowed: &'static [&'static str],
    /// Derived at ingest (e.g. `amount_base`); never read from input files.
    pub derived: bool,
}

const fn req(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: true,
        allowed: &[],
        derived: false,
    }
}
const fn opt(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: false,
        allowed: &[],
        derived: false,
    }
}
const fn req_enum(name: &'static str, allowed: &'static [&'static str]) -> Column {
    Column {
        name,
        kind: Kind::Str,
        required: true,
        allowed,
        derived: false,
    }
}
const fn opt_enum(name: &'static str, allowed: &'static [&'static str]) -> Column {
    Column {
        name,
        kind: Kind::Str,
        required: false,
        allowed,
        derived: false,
    }
}
const fn derived(name: &'static str, kind: Kind) -> Column {
    Column {
        name,
        kind,
        required: false,
        allowed: &[],
        derived: true,
    }
}

/// Money handling of a table: which column holds the amount, which the currency, which the
/// date that picks the fx rate, and where the base-currency amount goes.
#[derive(Debug, Clone, Copy)]
pub struct Money {
    pub amount: &'static str,
    pub currency: &'static str,
    /// The columns whose local date picks the fx rate: the first one set on the row.
    pub rate_dates: &'static [&'static str],
    pub base: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [Column],
    pub primary_key: &'static [&'static str],
    /// Timestamp column whose local month partitions the table in the store (`month=YYYY-MM`).
    pub partition_by: Option<&'static str>,
    /// Columns the stored table is sorted by (after the partition), so readers need no sort.
    pub sort_by: &'static [&'static str],
    pub money: Option<Money>,
}

/// Every table may carry `updated_at`; when two rows share a primary key, the one with the
/// latest `updated_at` wins (else the last one read).
pub const UPDATED_AT: &str = "updated_at";

pub const OPPORTUNITY_STATUS: &[&str] = &["open", "won", "lost"];
pub const ACTIVITY_KINDS: &[&str] = &["call", "email", "meeting", "visit", "task"];
pub const GRAINS: &[&str] = &["week", "month", "quarter", "year"];

pub const LEADS: TableDef = TableDef {
    name: "leads",
    columns: &[
        req("lead_id", Kind::Str),
        req("created_at", Kind::Timestamp),
        req("source", Kind::Str),
        opt("campaign_id", Kind::Str),
        opt("owner_id", Kind::Str),
        opt("region", Kind::Str),
        opt("qualified_at", Kind::Timestamp),
        opt("converted_at", Kind::Timestamp),
        opt("account_id", Kind::Str),
        opt("disqualified_at", Kind::Timestamp),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["lead_id"],
    partition_by: Some("created_at"),
    sort_by: &["created_at", "lead_id"],
    money: None,
};

pub const ACCOUNTS: TableDef = TableDef {
    name: "accounts",
    columns: &[
        req("account_id", Kind::Str),
        req("created_at", Kind::Timestamp),
        opt("name", Kind::Str),
        opt("region", Kind::Str),
        opt("segment", Kind::Str),
        opt("industry", Kind::Str),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["account_id"],
    partition_by: None,
    sort_by: &["account_id"],
    money: None,
};

/// The pipeline's stages as the CRM defines them (Salesforce OpportunityStage, HubSpot's and
/// Pipedrive's stage lists). When the store holds any, they replace the config's `[[stages]]`
/// for every KPI and for the `unknown_stage` rule.
pub const STAGES: TableDef = TableDef {
    name: "stages",
    columns: &[
        req("stage", Kind::Str),
        // Order in the pipeline (1 = first).
        opt("position", Kind::Int),
        // Win probability, 0-1.
        opt("probability", Kind::Float),
        // `won` or `lost` for the stages that close a deal; null for open stages.
        opt_enum("terminal", &["won", "lost"]),
        opt("pipeline", Kind::Str),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["stage"],
    partition_by: None,
    sort_by: &["position", "stage"],
    money: None,
};

/// Opportunities may have no amount or no account: Salesforce and HubSpot allow both, and such
/// a deal still counts in win rates, funnels and cycles (its amount is null; the ingest report
/// counts them).
pub const OPPORTUNITIES: TableDef = TableDef {
    name: "opportunities",
    columns: &[
        req("opportunity_id", Kind::Str),
        opt("account_id", Kind::Str),
        req("created_at", Kind::Timestamp),
        req("owner_id", Kind::Str),
        opt("amount", Kind::Float),
        opt("currency", Kind::Str),
        req_enum("status", OPPORTUNITY_STATUS),
        opt("closed_at", Kind::Timestamp),
        opt("expected_close_date", Kind::Date),
        opt("lead_id", Kind::Str),
        opt("campaign_id", Kind::Str),
        opt("loss_reason", Kind::Str),
        opt("product", Kind::Str),
        opt("region", Kind::Str),
        opt("forecast_category", Kind::Str),
        // The stage the export shows the deal in (its history is in stage_events).
        opt("stage", Kind::Str),
        // The deal's pipeline as the CRM names it (HubSpot's pipeline, Pipedrive's pipeline,
        // Salesforce's record type); null for a CRM or an export with one pipeline.
        opt("pipeline", Kind::Str),
        opt(UPDATED_AT, Kind::Timestamp),
        derived("amount_base", Kind::Float),
    ],
    primary_key: &["opportunity_id"],
    partition_by: None,
    sort_by: &["opportunity_id"],
    money: Some(Money {
        amount: "amount",
        currency: "currency",
        // As Salesforce and HubSpot do: the rate of the close (actual, else expected); a deal
        // with neither takes its creation's.
        rate_dates: &["closed_at", "expected_close_date", "created_at"],
        base: "amount_base",
    }),
};

pub const STAGE_EVENTS: TableDef = TableDef {
    name: "stage_events",
    columns: &[
        req("opportunity_id", Kind::Str),
        req("stage", Kind::Str),
        req("entered_at", Kind::Timestamp),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["opportunity_id", "stage", "entered_at"],
    // Not partitioned: kept sorted by deal then time, so "next event of the deal" needs no sort.
    partition_by: None,
    sort_by: &["opportunity_id", "entered_at", "stage"],
    money: None,
};

pub const ORDERS: TableDef = TableDef {
    name: "orders",
    columns: &[
        req("order_id", Kind::Str),
        req("account_id", Kind::Str),
        req("ordered_at", Kind::Timestamp),
        req("amount", Kind::Float),
        opt("currency", Kind::Str),
        opt("opportunity_id", Kind::Str),
        opt("paid_at", Kind::Timestamp),
        opt("due_at", Kind::Timestamp),
        opt("region", Kind::Str),
        opt("channel", Kind::Str),
        // A negative amount is accepted only on a row that says it is a refund.
        opt("is_refund", Kind::Bool),
        opt(UPDATED_AT, Kind::Timestamp),
        derived("amount_base", Kind::Float),
    ],
    primary_key: &["order_id"],
    partition_by: Some("ordered_at"),
    sort_by: &["ordered_at", "order_id"],
    money: Some(Money {
        amount: "amount",
        currency: "currency",
        rate_dates: &["ordered_at"],
        base: "amount_base",
    }),
};

pub const ACTIVITIES: TableDef = TableDef {
    name: "activities",
    columns: &[
        req("activity_id", Kind::Str),
        req("owner_id", Kind::Str),
        req_enum("kind", ACTIVITY_KINDS),
        req("occurred_at", Kind::Timestamp),
        opt("outcome", Kind::Str),
        opt("duration_s", Kind::Duration),
        opt("lead_id", Kind::Str),
        opt("opportunity_id", Kind::Str),
        opt("account_id", Kind::Str),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["activity_id"],
    partition_by: Some("occurred_at"),
    sort_by: &["occurred_at", "activity_id"],
    money: None,
};

pub const REPS: TableDef = TableDef {
    name: "reps",
    columns: &[
        req("rep_id", Kind::Str),
        req("name", Kind::Str),
        opt("team", Kind::Str),
        opt("region", Kind::Str),
        opt("manager_id", Kind::Str),
        opt("active_from", Kind::Date),
        opt("active_to", Kind::Date),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["rep_id"],
    partition_by: None,
    sort_by: &["rep_id"],
    money: None,
};

pub const TARGETS: TableDef = TableDef {
    name: "targets",
    columns: &[
        req("scope", Kind::Str),
        req_enum("scope_kind", &["rep", "team"]),
        req("period_start", Kind::Date),
        req_enum("grain", GRAINS),
        req("metric", Kind::Str),
        req("value", Kind::Float),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["scope_kind", "scope", "period_start", "grain", "metric"],
    partition_by: None,
    sort_by: &["scope_kind", "scope", "period_start", "grain", "metric"],
    money: None,
};

pub const FORECASTS: TableDef = TableDef {
    name: "forecasts",
    columns: &[
        req("owner_id", Kind::Str),
        req("period_start", Kind::Date),
        req_enum("grain", GRAINS),
        req("amount", Kind::Float),
        opt_enum("category", &["commit", "best_case", "pipeline", "omitted"]),
        req("submitted_at", Kind::Timestamp),
        opt("currency", Kind::Str),
        opt("pipeline", Kind::Str),
        opt(UPDATED_AT, Kind::Timestamp),
        derived("amount_base", Kind::Float),
    ],
    primary_key: &[
        "owner_id",
        "period_start",
        "grain",
        "category",
        "pipeline",
        "submitted_at",
    ],
    partition_by: None,
    sort_by: &["owner_id", "period_start", "submitted_at"],
    money: Some(Money {
        amount: "amount",
        currency: "currency",
        rate_dates: &["submitted_at"],
        base: "amount_base",
    }),
};

pub const CAMPAIGNS: TableDef = TableDef {
    name: "campaigns",
    columns: &[
        req("campaign_id", Kind::Str),
        req("name", Kind::Str),
        req("channel", Kind::Str),
        opt("spend", Kind::Float),
        opt("currency", Kind::Str),
        opt("started_at", Kind::Timestamp),
        opt("ended_at", Kind::Timestamp),
        opt(UPDATED_AT, Kind::Timestamp),
        derived("spend_base", Kind::Float),
    ],
    primary_key: &["campaign_id"],
    partition_by: None,
    sort_by: &["campaign_id"],
    money: Some(Money {
        amount: "spend",
        currency: "currency",
        rate_dates: &["started_at"],
        base: "spend_base",
    }),
};

pub const FX_RATES: TableDef = TableDef {
    name: "fx_rates",
    columns: &[
        req("currency", Kind::Str),
        req("date", Kind::Date),
        req("rate_to_base", Kind::Float),
        opt(UPDATED_AT, Kind::Timestamp),
    ],
    primary_key: &["currency", "date"],
    partition_by: None,
    sort_by: &["currency", "date"],
    money: None,
};

/// All tables, in dependency order: a table's references point only at tables before it,
/// so ingesting in this order lets each batch check references against what precedes it.
pub const TABLES: &[TableDef] = &[
    STAGES,
    FX_RATES,
    REPS,
    CAMPAIGNS,
    ACCOUNTS,
    LEADS,
    OPPORTUNITIES,
    STAGE_EVENTS,
    ORDERS,
    ACTIVITIES,
    TARGETS,
    FORECASTS,
];

/// The tables of a CRM's history, without its stage list (the first table): what `generate`
/// writes (its pipeline is the config's).
pub const DATA_TABLES: &[TableDef] = TABLES.split_at(1).1;

/// A foreign key that `validate` reports on (orphans) and ingest enforces where `enforced`.
#[derive(Debug, Clone, Copy)]
pub struct Reference {
    pub table: &'static str,
    pub column: &'static str,
    pub target: &'static str,
    pub target_column: &'static str,
    /// Enforced at ingest: a row pointing at an unknown target is quarantined.
    pub enforced: bool,
}

const fn reference(
    table: &'static str,
    column: &'static str,
    target: &'static str,
    target_column: &'static str,
    enforced: bool,
) -> Reference {
    Reference {
        table,
        column,
        target,
        target_column,
        enforced,
    }
}

/// References between tables. Deal references are enforced (README, "What gets rejected": "reference to an unknown
/// deal"); the others are reported by `validate`, since CRM exports often cut them.
pub const REFERENCES: &[Reference] = &[
    reference(
        "stage_events",
        "opportunity_id",
        "opportunities",
        "opportunity_id",
        true,
    ),
    reference("orders", "opportunity_id", "opportunities", "opportunity_id", true),
    reference("activities", "opportunity_id", "opportunities", "opportunity_id", true),
    reference("opportunities", "account_id", "accounts", "account_id", false),
    reference("opportunities", "owner_id", "reps", "rep_id", false),
    reference("opportunities", "lead_id", "leads", "lead_id", false),
    reference("opportunities", "campaign_id", "campaigns", "campaign_id", false),
    reference("leads", "campaign_id", "campaigns", "campaign_id", false),
    reference("leads", "owner_id", "reps", "rep_id", false),
    reference("orders", "account_id", "accounts", "account_id", false),
    reference("activities", "owner_id", "reps", "rep_id", false),
    reference("activities", "lead_id", "leads", "lead_id", false),
    reference("activities", "account_id", "accounts", "account_id", false),
    reference("forecasts", "owner_id", "reps", "rep_id", false),
];

pub fn table(name: &str) -> Option<&'static TableDef> {
    TABLES.iter().find(|t| t.name == name)
}

pub fn table_names() -> Vec<&'static str> {
    TABLES.iter().map(|t| t.name).collect()
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&'static Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Columns read from input files (all but the derived ones).
    pub fn input_columns(&self) -> impl Iterator<Item = &'static Column> {
        self.columns.iter().filter(|c| !c.derived)
    }

    /// The polars schema of the stored table.
    pub fn polars_schema(&self) -> polars::prelude::Schema {
        self.columns.iter().map(|c| (c.name.into(), c.kind.dtype())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn twelve_tables_with_unique_names() {
        let names: HashSet<_> = TABLES.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), 12);
    }

    #[test]
    fn keys_sorts_partitions_and_money_name_real_columns() {
        for t in TABLES {
            let mut seen = HashSet::new();
            for c in t.columns {
                assert!(seen.insert(c.name), "{}.{} declared twice", t.name, c.name);
            }
            for k in t.primary_key.iter().chain(t.sort_by).chain(t.partition_by.iter()) {
                assert!(t.column(k).is_some(), "{}: unknown column {k}", t.name);
            }
            if let Some(p) = t.partition_by {
                assert_eq!(t.column(p).unwrap().kind, Kind::Timestamp, "{}", t.name);
            }
            if let Some(m) = t.money {
                for c in [m.amount, m.currency, m.base].iter().chain(m.rate_dates) {
                    assert!(t.column(c).is_some(), "{}: money column {c}", t.name);
                }
                assert!(t.column(m.base).unwrap().derived);
            }
        }
    }

    #[test]
    fn references_point_backwards_in_ingest_order() {
        let pos = |n: &str| TABLES.iter().position(|t| t.name == n).unwrap();
        for r in REFERENCES {
            assert!(table(r.table).unwrap().column(r.column).is_some(), "{r:?}");
            assert!(table(r.target).unwrap().column(r.target_column).is_some(), "{r:?}");
            if r.enforced {
                assert!(pos(r.target) < pos(r.table), "{r:?}");
            }
        }
    }
}

/// The validation rules (README, "What gets rejected"). Every quarantined row carries the rule's `code()` in
/// `_rule` and a sentence naming the column and value in `_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    MissingRequired,
    Unparseable,
    InvalidValue,
    NegativeAmount,
    ClosedWithoutDate,
    ClosedBeforeCreated,
    UnknownStage,
    EventBeforeCreated,
    UnknownDeal,
    NoFxRate,
    DuplicateKey,
}

impl Rule {
    pub const ALL: &'static [Rule] = &[
        Rule::MissingRequired,
        Rule::Unparseable,
        Rule::InvalidValue,
        Rule::NegativeAmount,
        Rule::ClosedWithoutDate,
        Rule::ClosedBeforeCreated,
        Rule::UnknownStage,
        Rule::EventBeforeCreated,
        Rule::UnknownDeal,
        Rule::NoFxRate,
        Rule::DuplicateKey,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Rule::MissingRequired => "missing_required",
            Rule::Unparseable => "unparseable",
            Rule::InvalidValue => "invalid_value",
            Rule::NegativeAmount => "negative_amount",
            Rule::ClosedWithoutDate => "closed_without_date",
            Rule::ClosedBeforeCreated => "closed_before_created",
            Rule::UnknownStage => "unknown_stage",
            Rule::EventBeforeCreated => "event_before_created",
            Rule::UnknownDeal => "unknown_deal",
            Rule::NoFxRate => "no_fx_rate",
            Rule::DuplicateKey => "duplicate_key",
        }
    }

    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL.iter().copied().find(|r| r.code() == code)
    }
}
