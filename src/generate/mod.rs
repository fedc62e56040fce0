//! Synthetic CRM history (README, "Try it on synthetic data").
//!
//! The world is a fixed calendar window, 2023-01-01 to 2026-06-30 UTC, independent of the
//! current date. Global entities (reps and teams, campaigns, daily fx rates) come first;
//! the lead population is then cut into independent chunks that each grow their own
//! accounts, deals with stage history, orders and activities (`sim`). Chunks draw from
//! random streams keyed by (seed, chunk), run in parallel, and are written in chunk order,
//! batch by batch, so the output is byte-identical for a seed and scale whatever the
//! thread scheduling, and memory stays bounded at scale l. Targets, forecasts and campaign
//! spend are derived at the end from per-rep and per-campaign aggregates.
//!
//! `--dirty` appends a known number of bad rows per table and rule (`dirty`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::config::Config;
use crate::error::GenerateError;
use crate::schema::{self, Rule};

mod calendar;
mod dirty;
mod frames;
mod rng;
mod sim;
#[cfg(test)]
mod tests;
mod world;
mod writer;

use frames::Offsets;
use sim::Stats;
use world::World;
use writer::TableWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    Tiny,
    S,
    M,
    L,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Parquet,
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub scale: Scale,
    pub seed: u64,
    pub out: PathBuf,
    pub format: Format,
    pub dirty: bool,
    /// How many of the configuration's pipelines the deals spread over (1: the first only).
    /// With 2, expansion deals (an account's later deals) go to the second pipeline, and a few
    /// of them start in the first one's first stage (deals moved between pipelines).
    pub pipelines: usize,
}

#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    /// table -> rows written (including injected dirty rows)
    pub rows: BTreeMap<String, usize>,
    /// (table, rule code) -> bad rows injected
    pub dirty: BTreeMap<(String, String), usize>,
}

/// `1234567` -> `1,234,567`.
fn grouped(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

impl GenerateReport {
    /// Rows per table (in ingest order) and, when dirty, the bad rows per table and rule.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{:<16} {:>12}", "table", "rows");
        let mut names: Vec<&str> = schema::DATA_TABLES.iter().map(|t| t.name).collect();
        names.extend(
            self.rows
                .keys()
                .map(|k| k.as_str())
                .filter(|k| schema::table(k).is_none()),
        );
        for name in &names {
            if let Some(n) = self.rows.get(*name) {
                let _ = writeln!(s, "{:<16} {:>12}", name, grouped(*n));
            }
        }
        let _ = writeln!(s, "{:<16} {:>12}", "total", grouped(self.rows.values().sum()));
        if !self.dirty.is_empty() {
            let _ = writeln!(s);
            let _ = writeln!(
                s,
                "dirty rows appended (each breaks one rule; duplicates are exact copies):"
            );
            let _ = writeln!(s, "{:<16} {:<22} {:>5}", "table", "rule", "rows");
            let rank = |t: &str| names.iter().position(|n| *n == t).unwrap_or(usize::MAX);
            let rule_rank = |r: &str| Rule::from_code(r).map_or(usize::MAX, |r| r as usize);
            let mut entries: Vec<(&(String, String), &usize)> = self.dirty.iter().collect();
            entries.sort_by_key(|((t, r), _)| (rank(t), rule_rank(r), t.clone(), r.clone()));
            for ((t, r), n) in entries {
                let _ = writeln!(s, "{:<16} {:<22} {:>5}", t, r, n);
            }
            let _ = writeln!(
                s,
                "{:<16} {:<22} {:>5}",
                "total",
                "",
                self.dirty.values().sum::<usize>()
            );
        }
        s
    }
}

pub fn generate(opts: &GenerateOptions, config: &Config) -> Result<GenerateReport, GenerateError> {
    std::fs::create_dir_all(&opts.out).map_err(|source| GenerateError::Io {
        path: opts.out.clone(),
        source,
    })?;
    let have = config.pipeline_names().len();
    if opts.pipelines == 0 || opts.pipelines > have {
        return Err(GenerateError::Pipelines {
            wanted: opts.pipelines,
            have,
        });
    }
    let w = World::new(opts.seed, opts.scale, config, opts.pipelines);
    let open = |def: &'static schema::TableDef| {
        let (stringify, dups) = if opts.dirty {
            (dirty::stringified(def.name), dirty::count(def.name, Rule::DuplicateKey))
        } else {
            (Vec::new(), 0)
        };
        TableWriter::create(&opts.out, def, opts.format, stringify, dups)
    };

    let mut leads = open(&schema::LEADS)?;
    let mut accounts = open(&schema::ACCOUNTS)?;
    let mut opportunities = open(&schema::OPPORTUNITIES)?;
    let mut stage_events = open(&schema::STAGE_EVENTS)?;
    let mut orders = open(&schema::ORDERS)?;
    let mut activities = open(&schema::ACTIVITIES)?;

    let mut stats = Stats::new(w.reps.len(), w.campaigns.len());
    let mut off = Offsets::default();
    let mut bad = None;
    let n_chunks = w.params.chunks();
    let mut start = 0;
    while start < n_chunks {
        let stop = (start + w.params.batch_chunks).min(n_chunks);
        let data: Vec<sim::ChunkData> = (start..stop)
            .into_par_iter()
            .map(|c| sim::simulate_chunk(&w, c))
            .collect();
        for d in &data {
            stats.merge(&d.stats);
        }
        if opts.dirty && bad.is_none() {
            bad = Some(dirty::bad_rows(&w, &data[0]));
        }
        let f = frames::chunk_frames(&w, &data, &mut off)?;
        drop(data);
        leads.write(f.leads)?;
        accounts.write(f.accounts)?;
        opportunities.write(f.opportunities)?;
        stage_events.write(f.stage_events)?;
        orders.write(f.orders)?;
        activities.write(f.activities)?;
        start = stop;
    }

    let mut writers = vec![leads, accounts, opportunities, stage_events, orders, activities];
    for (def, df) in [
        (&schema::FX_RATES, frames::fx_frame(&w)?),
        (&schema::REPS, frames::reps_frame(&w)?),
        (&schema::CAMPAIGNS, frames::campaigns_frame(&w, &stats)?),
        (&schema::TARGETS, frames::targets_frame(&w, &stats)?),
        (&schema::FORECASTS, frames::forecasts_frame(&w, &stats)?),
    ] {
        let mut wr = open(def)?;
        wr.write(df)?;
        writers.push(wr);
    }

    let mut report = GenerateReport::default();
    let bad = bad.unwrap_or_default();
    for mut wr in writers {
        if let Some(rules) = bad.get(wr.table) {
            for (rule, rows) in rules {
                wr.write_text_rows(rows)?;
                *report
                    .dirty
                    .entry((wr.table.to_string(), rule.code().to_string()))
                    .or_default() += rows.len();
            }
        }
        let dups = wr.duplicates();
        if dups > 0 {
            report
                .dirty
                .insert((wr.table.to_string(), Rule::DuplicateKey.code().to_string()), dups);
        }
        let table = wr.table.to_string();
        let path = wr.path().to_path_buf();
        let rows = wr.finish().map_err(|e| GenerateError::Io {
            path,
            source: std::io::Error::other(e.to_string()),
        })?;
        report.rows.insert(table, rows);
    }
    Ok(report)
}
