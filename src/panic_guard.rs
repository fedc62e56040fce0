//! Turning panics inside third-party decoders (a corrupt Parquet page can trip an assertion
//! in polars) into errors, without the panic message on stderr.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

static QUIET: AtomicUsize = AtomicUsize::new(0);
static LAST: Mutex<Option<String>> = Mutex::new(None);
static HOOK: Once = Once::new();

fn install_hook() {
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.load(Ordering::SeqCst) > 0 {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                if let Ok(mut last) = LAST.lock() {
                    *last = Some(format!("{msg}{at}"));
                }
            } else {
                default(info);
            }
        }));
    });
}

/// Runs `f`; a panic in it (or in threads it joins) becomes `Err(message)`.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    QUIET.fetch_add(1, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.fetch_sub(1, Ordering::SeqCst);
    r.map_err(|_| {
        LAST.lock()
            .ok()
            .and_then(|mut l| l.take())
            .unwrap_or_else(|| "the decoder panicked".into())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn panics_become_errors() {
        assert_eq!(super::guard(|| 5), Ok(5));
        let e = super::guard(|| -> i32 { panic!("boom {}", 7) }).unwrap_err();
        assert!(e.starts_with("boom 7 at "), "{e}");
    }
}
