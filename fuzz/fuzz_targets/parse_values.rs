#![no_main]
//! Any text through every value parser, in several zones and locales.

use crm_kpi::ingest::parse::{Locale, ParseOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    for (tz, locale) in [("UTC", None), ("Europe/Berlin", Some("de-DE")), ("America/New_York", Some("en-US"))] {
        let o = ParseOptions {
            tz: tz.parse().expect("zone"),
            locale: locale.and_then(Locale::parse),
            formats: vec!["%d/%m/%Y %H:%M".into()],
            lenient: false,
        };
        let _ = o.timestamp_us(&s);
        let _ = o.date_days(&s);
        let _ = o.f64(&s);
        let _ = o.i64(&s);
        let _ = o.duration_s(&s);
        let _ = o.bool(&s);
    }
});
