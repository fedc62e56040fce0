"""Type stubs of the native module (py/src/lib.rs); use the functions of `crm_kpi` instead."""

class CrmKpiError(Exception):
    """An error of crm-kpi: the message is the one the command line prints after `error: `."""

class ArrowStream:
    """A KPI table with the Arrow PyCapsule interface; `polars.DataFrame(obj)` reads it."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...
    def __len__(self) -> int: ...

def call(argv: list[str]) -> int:
    """Runs a command line (without the program's name); 0, or 1 for rows rejected under --strict."""

def show(argv: list[str]) -> ArrowStream:
    """The rows of `crm-kpi show ARGV...`."""

def catalog_json() -> str:
    """`crm-kpi list --json`."""

def cli_main(argv: list[str]) -> int:
    """The whole command line (argv[0] is the program's name); returns the exit code."""
