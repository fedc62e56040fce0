//! Criterion benchmarks of the KPI engine: one group per KPI family and one for the whole
//! catalog (what `crm-kpi run` computes), on a generated store, with throughput in input rows.
//!
//! `cargo bench --bench kpi` generates and ingests scale `s` once into
//! `$CARGO_TARGET_DIR/bench-data/<scale>` (override the scale with `CRM_KPI_BENCH_SCALE`, the
//! directory with `CRM_KPI_BENCH_DIR`). See benches/README.md for baselines.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use crm_kpi::config::Config;
use crm_kpi::generate::{Format, GenerateOptions, Scale, generate};
use crm_kpi::ingest::{IngestOptions, ingest};
use crm_kpi::kpi::inputs::Tables;
use crm_kpi::kpi::run::compute;
use crm_kpi::kpi::{Family, Grain, Kpi, Params, parse_as_of, registry};
use crm_kpi::schema;
use crm_kpi::store::Store;
use polars::prelude::Engine;

const AS_OF: &str = "2026-06-30";

fn scale() -> (Scale, &'static str) {
    match std::env::var("CRM_KPI_BENCH_SCALE").as_deref() {
        Ok("tiny") => (Scale::Tiny, "tiny"),
        Ok("m") => (Scale::M, "m"),
        Ok("l") => (Scale::L, "l"),
        _ => (Scale::S, "s"),
    }
}

/// The benchmark store, generated (seed 7, Parquet) and ingested on first use.
fn store_dir(config: &Config) -> PathBuf {
    let (scale, name) = scale();
    let root = std::env::var_os("CRM_KPI_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
            target.join("bench-data").join(name)
        });
    let store = root.join("store");
    if !store.join("_manifest.json").exists() {
        let gen_dir = root.join("gen");
        let opts = GenerateOptions {
            scale,
            seed: 7,
            out: gen_dir.clone(),
            format: Format::Parquet,
            dirty: false,
            pipelines: 1,
        };
        generate(&opts, config).expect("generate the benchmark data");
        let files: Vec<PathBuf> = schema::DATA_TABLES
            .iter()
            .map(|t| gen_dir.join(format!("{}.parquet", t.name)))
            .filter(|p| p.exists())
            .collect();
        ingest(&store, &files, &IngestOptions::default(), config).expect("ingest the benchmark data");
    }
    store
}

fn input_rows(store: &Path) -> u64 {
    let s = Store::open(store).expect("open the benchmark store");
    schema::DATA_TABLES.iter().map(|t| s.manifest().rows(t.name)).sum()
}

fn kpis(c: &mut Criterion) {
    let config = Config::default();
    let store_path = store_dir(&config);
    let store = Store::open(&store_path).expect("open the benchmark store");
    let tables = Tables::from_store(&store).expect("scan the store");
    let as_of = parse_as_of(AS_OF, config.tz()).expect("as_of");
    let params = Params::new(as_of, Grain::Month, config);
    let rows = input_rows(&store_path);
    let mut g = c.benchmark_group("family");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(rows));
    for fam in Family::ALL {
        g.bench_function(BenchmarkId::from_parameter(fam.slug()), |b| {
            b.iter(|| {
                let selected: Vec<Kpi> = registry().into_iter().filter(|k| k.family == fam).collect();
                compute(&tables, &params, selected, Engine::InMemory).expect("compute the family")
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("run");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(rows));
    g.bench_function("catalog", |b| {
        b.iter(|| compute(&tables, &params, registry(), Engine::InMemory).expect("compute the catalog"))
    });
    g.finish();
}

criterion_group!(benches, kpis);
criterion_main!(benches);
