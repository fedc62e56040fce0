//! `crm_kpi._crm_kpi`: the crm-kpi engine as a Python extension module. The Python package
//! (python/crm_kpi) wraps it: each call builds the command line it stands for, and runs it in
//! this process with the GIL released, so the same arguments mean the same thing and errors
//! carry the command line's messages. KPI tables cross to Python as an Arrow C stream
//! (`__arrow_c_stream__`): `polars.DataFrame(...)` takes the buffers without copying them.

use polars::prelude::{ArrowDataType, ArrowField, CompatLevel, DataFrame, PlSmallStr, PolarsResult, SchemaExt};
use polars_core::utils::arrow::array::{Array, StructArray};
use polars_core::utils::arrow::ffi;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crm_kpi::cli::{Command, Outcome};

pyo3::create_exception!(
    crm_kpi,
    CrmKpiError,
    PyException,
    "An error of crm-kpi: the message is the one the command line prints after `error: `."
);

/// Runs `work` with the GIL released; an error or a panic becomes a CrmKpiError.
fn detached<T: Send>(py: Python<'_>, work: impl FnOnce() -> Result<T, String> + Send) -> PyResult<T> {
    py.detach(move || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
            .unwrap_or_else(|_| Err("internal error (please report the message above)".into()))
    })
    .map_err(CrmKpiError::new_err)
}

/// Parses `argv` (without the program's name) as the command line would, and starts logging
/// as it would (warnings to stderr; `-q`, `-v`, `CRM_KPI_LOG`), once per process.
fn parse(argv: Vec<String>) -> Result<crm_kpi::cli::Cli, String> {
    let cli = crm_kpi::cli::parse(std::iter::once("crm-kpi".to_string()).chain(argv))?;
    crm_kpi::cli::log::init(cli.verbose, cli.quiet, cli.log_format);
    Ok(cli)
}

/// Runs a command line (`["run", "--store", ...]`, without the program's name) in this process
/// and returns its exit code for data problems (0, or 1 for rows rejected under --strict);
/// raises CrmKpiError on any error.
#[pyfunction]
fn call(py: Python<'_>, argv: Vec<String>) -> PyResult<u8> {
    detached(py, move || {
        let cli = parse(argv)?;
        match crm_kpi::cli::dispatch(&cli) {
            Ok(Outcome::Ok) => Ok(0),
            Ok(Outcome::DataProblems) => Ok(1),
            Err(e) => Err(crm_kpi::cli::error_message(&e)),
        }
    })
}

/// The rows of `crm-kpi show ARGV...` as an Arrow stream (see `ArrowStream`).
#[pyfunction]
fn show(py: Python<'_>, argv: Vec<String>) -> PyResult<ArrowStream> {
    let df = detached(py, move || {
        let cli = parse(std::iter::once("show".to_string()).chain(argv).collect())?;
        let Command::Show(args) = &cli.command else {
            return Err("not a show command".into());
        };
        let mut df = crm_kpi::cli::show::frame(&cli, args).map_err(|e| crm_kpi::cli::error_message(&e))?;
        df.align_chunks_par();
        Ok(df)
    })?;
    Ok(ArrowStream(df))
}

/// The KPI catalog as JSON (the text of `crm-kpi list --json`).
#[pyfunction]
fn catalog_json() -> String {
    crm_kpi::kpi::catalog::json().to_string()
}

/// The whole command line, as the `crm-kpi` command runs it; returns its exit code.
#[pyfunction]
fn cli_main(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(move || crm_kpi::cli::run_from(argv))
}

/// A table on its way to Python: an object with the Arrow PyCapsule interface
/// (`__arrow_c_stream__`), read by `polars.DataFrame(obj)`, `pyarrow.table(obj)` and others
/// without copying its buffers.
#[pyclass(frozen, module = "crm_kpi._crm_kpi")]
struct ArrowStream(DataFrame);

#[pymethods]
impl ArrowStream {
    /// The table as an `arrow_array_stream` capsule: one struct array per chunk. The
    /// requested schema, which a producer may ignore, is ignored.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let df = &self.0;
        let fields: Vec<ArrowField> = df.schema().to_arrow(CompatLevel::newest()).into_iter_values().collect();
        let dtype = ArrowDataType::Struct(fields);
        let field = ArrowField::new(PlSmallStr::EMPTY, dtype.clone(), false);
        let columns: Vec<_> = df
            .columns()
            .iter()
            .map(|c| c.as_materialized_series().clone())
            .collect();
        let height = df.height();
        let chunks = if columns.is_empty() { 0 } else { df.first_col_n_chunks() };
        let iter = (0..chunks).map(move |i| -> PolarsResult<Box<dyn Array>> {
            let arrays: Vec<Box<dyn Array>> = columns.iter().map(|s| s.to_arrow(i, CompatLevel::newest())).collect();
            let len = arrays.first().map_or(height, |a| a.len());
            Ok(Box::new(StructArray::new(dtype.clone(), len, arrays, None)))
        });
        PyCapsule::new_with_value(py, ffi::export_iterator(Box::new(iter), field), c"arrow_array_stream")
    }

    fn __len__(&self) -> usize {
        self.0.height()
    }
}

#[pymodule]
fn _crm_kpi(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("CrmKpiError", m.py().get_type::<CrmKpiError>())?;
    m.add_class::<ArrowStream>()?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add_function(wrap_pyfunction!(show, m)?)?;
    m.add_function(wrap_pyfunction!(catalog_json, m)?)?;
    m.add_function(wrap_pyfunction!(cli_main, m)?)?;
    Ok(())
}
