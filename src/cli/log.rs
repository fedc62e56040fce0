//! Logging for people and for schedulers: text lines with a timestamp, or one JSON object per
//! line (`--log-format json`: timestamp, level, run id, the event's fields), always to stderr.
//! A progress bar (on a TTY only) is suspended while a log line is written, so the two never
//! share a line.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    // `2026-12-07T04:35:22.123Z  INFO crm_kpi: written kpi=win_rate rows=695`
    #[default]
    Text,
    // `{"timestamp":"...","level":"info","run_id":"...","message":"written","kpi":"win_rate","rows":695}`
    Json,
}

/// The run id of the current `run`, added to every JSON log line once set.
pub static RUN_ID: OnceLock<String> = OnceLock::new();

/// The progress bar on screen, if any: log lines suspend it while they are written.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Shows a spinner with `message` on stderr when it is a terminal and `quiet` is off;
/// returns it (hidden otherwise), registered so log lines do not share its line.
pub fn progress(message: String, quiet: bool) -> indicatif::ProgressBar {
    if quiet || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(message);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = Some(pb.clone());
    pb
}

/// Updates the spinner's message, if one is on screen (the ingest reports its counts here).
pub fn set_progress(message: String) {
    if let Some(pb) = PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        pb.set_message(message);
    }
}

/// Clears the spinner and stops routing log lines around it.
pub fn finish_progress(pb: &indicatif::ProgressBar) {
    pb.finish_and_clear();
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// stderr, writing around the progress bar.
#[derive(Clone, Copy)]
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let pb = PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match pb {
            Some(pb) => pb.suspend(|| std::io::stderr().write_all(buf)).map(|()| buf.len()),
            None => std::io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;
    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

/// One JSON object per event.
pub struct JsonLines;

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for Fields<'_> {
    fn record_i64(&mut self, f: &Field, v: i64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_u64(&mut self, f: &Field, v: u64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_f64(&mut self, f: &Field, v: f64) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_bool(&mut self, f: &Field, v: bool) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_str(&mut self, f: &Field, v: &str) {
        self.0.insert(f.name().into(), v.into());
    }
    fn record_debug(&mut self, f: &Field, v: &dyn std::fmt::Debug) {
        self.0.insert(f.name().into(), format!("{v:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut map = serde_json::Map::new();
        map.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        map.insert("level".into(), event.metadata().level().as_str().to_lowercase().into());
        if let Some(id) = RUN_ID.get() {
            map.insert("run_id".into(), id.clone().into());
        }
        map.insert("target".into(), event.metadata().target().into());
        event.record(&mut Fields(&mut map));
        writeln!(w, "{}", serde_json::Value::Object(map))
    }
}

/// Sets up logging: `verbose` 0 warnings, 1 info, 2 debug (`CRM_KPI_LOG` overrides); `quiet`
/// errors only.
pub fn init(verbose: u8, quiet: bool, format: LogFormat) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRM_KPI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(Stderr);
    let _ = match format {
        LogFormat::Json => builder.event_format(JsonLines).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
}
