//! How the text of one input file is read as typed values: its time zone, its locale (decimal
//! and grouping separators, day or month first), extra date formats, and whether an
//! unparseable optional value rejects the row or becomes null.
//!
//! The default options read the formats of `timefmt` (ISO dates and times, epoch values,
//! plain decimals) in the configured time zone, and reject what they cannot read. A mapping
//! source (`[[sources]]`, presets) sets its own.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;

use crate::timefmt;

/// Number and date conventions of a locale, named explicitly in the config (`locale = "de-DE"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    /// Decimal separator: `.` or `,`.
    pub decimal: char,
    /// The thousands separator the locale writes (spaces of every width are always accepted).
    pub group: char,
    /// `05/03/2024` is 5 March (true) or May 3 (false).
    pub day_first: bool,
}

/// The locales crm-kpi knows, by language (and region where it changes the conventions).
const LOCALES: &[(&str, Locale)] = &[
    ("en-us", loc('.', ',', false)),
    ("en-ca", loc('.', ',', false)),
    ("en-ph", loc('.', ',', false)),
    ("en", loc('.', ',', true)),
    ("ja", loc('.', ',', false)),
    ("zh", loc('.', ',', false)),
    ("ko", loc('.', ',', false)),
    ("de-ch", loc('.', '\'', true)),
    ("de", loc(',', '.', true)),
    ("nl", loc(',', '.', true)),
    ("es", loc(',', '.', true)),
    ("it", loc(',', '.', true)),
    ("pt", loc(',', '.', true)),
    ("id", loc(',', '.', true)),
    ("tr", loc(',', '.', true)),
    ("da", loc(',', '.', true)),
    ("fr-ch", loc('.', '\'', true)),
    ("fr", loc(',', ' ', true)),
    ("sv", loc(',', ' ', true)),
    ("fi", loc(',', ' ', true)),
    ("nb", loc(',', ' ', true)),
    ("no", loc(',', ' ', true)),
    ("pl", loc(',', ' ', true)),
    ("cs", loc(',', ' ', true)),
    ("ru", loc(',', ' ', true)),
    ("uk", loc(',', ' ', true)),
];

const fn loc(decimal: char, group: char, day_first: bool) -> Locale {
    Locale {
        decimal,
        group,
        day_first,
    }
}

impl Locale {
    /// A BCP 47 tag (`de-DE`, `en_US`, `fr`): the region-specific entry if there is one, else
    /// the language's.
    pub fn parse(tag: &str) -> Option<Locale> {
        let t = tag.trim().to_ascii_lowercase().replace('_', "-");
        let lang = t.split('-').next().unwrap_or("");
        LOCALES
            .iter()
            .find(|(k, _)| *k == t)
            .or_else(|| {
                let region = t.split('-').nth(1).unwrap_or("");
                LOCALES.iter().find(|(k, _)| *k == format!("{lang}-{region}"))
            })
            .or_else(|| LOCALES.iter().find(|(k, _)| *k == lang))
            .map(|(_, l)| *l)
    }

    pub fn known() -> String {
        LOCALES.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
    }
}

/// How the values of one input are parsed.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    /// Zone of naive times (and of the local day of a timestamp read as a date).
    pub tz: Tz,
    /// Locale numbers and dates; `None` reads only the plain formats.
    pub locale: Option<Locale>,
    /// strptime formats tried first for timestamps and dates.
    pub formats: Vec<String>,
    /// An unparseable optional value becomes null (counted) instead of rejecting its row.
    pub lenient: bool,
}

impl ParseOptions {
    pub fn new(tz: Tz) -> ParseOptions {
        ParseOptions {
            tz,
            locale: None,
            formats: Vec::new(),
            lenient: false,
        }
    }

    /// An instant, as µs since the epoch.
    pub fn timestamp_us(&self, s: &str) -> Option<i64> {
        let s = s.trim();
        for f in &self.formats {
            if let Some(us) = with_format(s, f, self.tz) {
                return Some(us);
            }
        }
        if let Some(us) = timefmt::parse_timestamp_us(s, self.tz) {
            return Some(us);
        }
        let locale = self.locale?;
        let naive = locale_datetime(s, locale)?;
        timefmt::local_to_utc(naive, self.tz).map(|d| d.timestamp_micros())
    }

    /// A calendar date, as days since 1970-01-01.
    pub fn date_days(&self, s: &str) -> Option<i32> {
        let s = s.trim();
        for f in &self.formats {
            if let Ok(d) = NaiveDate::parse_from_str(s, f) {
                return Some(timefmt::days_since_epoch(d));
            }
        }
        if let Some(d) = timefmt::parse_date_days(s, self.tz) {
            return Some(d);
        }
        if !self.formats.is_empty() || self.locale.is_some() {
            let us = self.timestamp_us(s)?;
            return timefmt::local_day(us, self.tz);
        }
        None
    }

    pub fn f64(&self, s: &str) -> Option<f64> {
        match self.locale {
            None => timefmt::parse_f64(s),
            Some(l) => locale_number(s, l),
        }
    }

    pub fn i64(&self, s: &str) -> Option<i64> {
        if let Some(v) = timefmt::parse_i64(s) {
            return Some(v);
        }
        let f = self.f64(s)?;
        (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
    }

    /// A duration in seconds: a number of seconds, or `H:MM` / `H:MM:SS` (Pipedrive's
    /// activity durations).
    pub fn duration_s(&self, s: &str) -> Option<i64> {
        let t = s.trim();
        if t.contains(':') {
            let parts: Vec<&str> = t.split(':').collect();
            if !(2..=3).contains(&parts.len())
                || parts
                    .iter()
                    .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return None;
            }
            let n: Vec<i64> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
            if n[1..].iter().any(|v| *v >= 60) {
                return None;
            }
            let secs = n[0].checked_mul(3600)?.checked_add(n[1] * 60)?;
            return secs.checked_add(n.get(2).copied().unwrap_or(0));
        }
        self.i64(t)
    }

    pub fn bool(&self, s: &str) -> Option<bool> {
        timefmt::parse_bool(s)
    }
}

fn with_format(s: &str, f: &str, tz: Tz) -> Option<i64> {
    if let Ok(dt) = chrono::DateTime::parse_from_str(s, f) {
        return Some(dt.timestamp_micros());
    }
    let naive = NaiveDateTime::parse_from_str(s, f)
        .ok()
        .or_else(|| NaiveDate::parse_from_str(s, f).ok().map(|d| d.and_time(NaiveTime::MIN)))?;
    timefmt::local_to_utc(naive, tz).map(|d| d.timestamp_micros())
}

/// A number written the locale's way: grouping separators (and spaces), the locale's decimal
/// separator, a currency code or symbol before or after, a trailing `%` (divides by 100),
/// accounting negatives in parentheses.
fn locale_number(s: &str, l: Locale) -> Option<f64> {
    let mut t = s.trim().to_string();
    let mut negative = false;
    if t.starts_with('(') && t.ends_with(')') {
        negative = true;
        t = t[1..t.len() - 1].trim().to_string();
    }
    let percent = t.ends_with('%');
    if percent {
        t.pop();
    }
    // A currency code (`USD 1,000.00`, `1.000,00 EUR`) or symbol.
    let t = t.trim();
    let t = strip_currency(t);
    let mut out = String::with_capacity(t.len());
    for c in t.chars() {
        if c == l.decimal {
            out.push('.');
        } else if c == l.group || c.is_whitespace() || c == '\u{a0}' || c == '\u{202f}' || c == '\'' {
            continue;
        } else {
            out.push(c);
        }
    }
    let v = timefmt::parse_f64(&out)?;
    let v = if negative { -v } else { v };
    Some(if percent { v / 100.0 } else { v })
}

fn strip_currency(t: &str) -> &str {
    const SYMBOLS: &[char] = &['$', '€', '£', '¥', '₹', '₽', '₩', '₺', '₫', '₪', '฿'];
    let t = t.trim_matches(|c: char| SYMBOLS.contains(&c)).trim();
    let is_code = |w: &str| w.len() == 3 && w.bytes().all(|b| b.is_ascii_uppercase());
    if let Some((head, rest)) = t.split_once(' ')
        && is_code(head)
    {
        return rest.trim();
    }
    if let Some((rest, tail)) = t.rsplit_once(' ')
        && is_code(tail)
    {
        return rest.trim();
    }
    t
}

/// `D/M/YYYY`, `M/D/YYYY`, `D.M.YYYY`, `D-M-YYYY` (order from the locale), `YYYY/M/D`, with
/// an optional time `H:MM[:SS]` and `AM`/`PM`; English month names (`15 Jan 2024`,
/// `Jan 15, 2024`).
fn locale_datetime(s: &str, l: Locale) -> Option<NaiveDateTime> {
    let t = s.trim();
    if let Some(d) = named_month_date(t) {
        return Some(d.and_time(NaiveTime::MIN));
    }
    let (date_part, time_part) = t.split_once(' ').map_or((t, ""), |(d, rest)| (d, rest.trim()));
    let date = numeric_date(date_part, l)?;
    let time = if time_part.is_empty() {
        NaiveTime::MIN
    } else {
        clock(time_part)?
    };
    Some(date.and_time(time))
}

fn numeric_date(s: &str, l: Locale) -> Option<NaiveDate> {
    let sep = s.chars().find(|c| matches!(c, '/' | '.' | '-'))?;
    let parts: Vec<&str> = s.trim_end_matches('.').split(sep).collect();
    if parts.len() != 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let n: Vec<u32> = parts.iter().map(|p| p.parse().ok()).collect::<Option<_>>()?;
    let (y, m, d) = if parts[0].len() == 4 {
        (n[0], n[1], n[2])
    } else if parts[2].len() == 4 {
        if l.day_first {
            (n[2], n[1], n[0])
        } else {
            (n[2], n[0], n[1])
        }
    } else {
        return None;
    };
    NaiveDate::from_ymd_opt(y as i32, m, d)
}

fn named_month_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    for f in ["%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%d-%b-%y"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return Some(d);
        }
    }
    None
}

fn clock(s: &str) -> Option<NaiveTime> {
    let t = s.trim().to_ascii_uppercase();
    let (body, pm) = if let Some(b) = t.strip_suffix("PM") {
        (b.trim(), Some(true))
    } else if let Some(b) = t.strip_suffix("AM") {
        (b.trim(), Some(false))
    } else {
        (t.as_str(), None)
    };
    let parts: Vec<&str> = body.split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let mut h: u32 = parts[0].parse().ok()?;
    let m: u32 = parts[1].parse().ok()?;
    let (sec, frac) = match parts.get(2) {
        None => (0, 0),
        Some(p) => match p.split_once('.') {
            None => (p.parse().ok()?, 0),
            Some((a, b)) => {
                let digits: String = b.chars().take(6).collect();
                let micros = format!("{digits:0<6}").parse::<u32>().ok()?;
                (a.parse().ok()?, micros)
            }
        },
    };
    match pm {
        Some(true) if (1..=11).contains(&h) => h += 12,
        Some(false) if h == 12 => h = 0,
        Some(_) if !(1..=12).contains(&h) => return None,
        _ => {}
    }
    NaiveTime::from_hms_micro_opt(h, m, sec, frac)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn us(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
        chrono::Utc
            .with_ymd_and_hms(y, mo, d, h, mi, 0)
            .unwrap()
            .timestamp_micros()
    }

    fn with_locale(tag: &str) -> ParseOptions {
        ParseOptions {
            locale: Some(Locale::parse(tag).unwrap()),
            ..ParseOptions::new(chrono_tz::UTC)
        }
    }

    #[test]
    fn locale_tags_resolve_to_region_then_language() {
        assert!(!Locale::parse("en-US").unwrap().day_first);
        assert!(Locale::parse("en_GB").unwrap().day_first);
        assert_eq!(Locale::parse("de-AT").unwrap().decimal, ',');
        assert_eq!(Locale::parse("de-CH").unwrap().decimal, '.');
        assert_eq!(Locale::parse("fr").unwrap().group, ' ');
        assert!(Locale::parse("xx-YY").is_none());
    }

    #[test]
    fn locale_numbers_currencies_percents_and_accounting_negatives() {
        let us_ = with_locale("en-US");
        assert_eq!(us_.f64("1,234.50"), Some(1234.5));
        assert_eq!(us_.f64("USD 1,000.00"), Some(1000.0));
        assert_eq!(us_.f64("$1,000"), Some(1000.0));
        assert_eq!(us_.f64("(2,500.00)"), Some(-2500.0));
        assert_eq!(us_.f64("10%"), Some(0.1));
        let de = with_locale("de-DE");
        assert_eq!(de.f64("1.234,56"), Some(1234.56));
        assert_eq!(de.f64("1.234,56 €"), Some(1234.56));
        assert_eq!(de.f64("35.000,00 EUR"), Some(35000.0));
        assert_eq!(de.f64("12,5 %"), Some(0.125));
        let fr = with_locale("fr-FR");
        assert_eq!(fr.f64("1\u{202f}234,5"), Some(1234.5));
        assert_eq!(fr.f64("1 234,5"), Some(1234.5));
        assert_eq!(de.f64("abc"), None);
        // Without a locale, only plain decimals.
        assert_eq!(ParseOptions::new(chrono_tz::UTC).f64("1,234.50"), None);
    }

    #[test]
    fn locale_dates_follow_the_day_order_of_the_locale() {
        let us_ = with_locale("en-US");
        assert_eq!(us_.timestamp_us("1/15/2024"), Some(us(2024, 1, 15, 0, 0)));
        assert_eq!(us_.timestamp_us("1/15/2024 3:05 PM"), Some(us(2024, 1, 15, 15, 5)));
        assert_eq!(us_.timestamp_us("1/15/2024 12:05 AM"), Some(us(2024, 1, 15, 0, 5)));
        let gb = with_locale("en-GB");
        assert_eq!(gb.timestamp_us("05/03/2024 10:30"), Some(us(2024, 3, 5, 10, 30)));
        let de = with_locale("de");
        assert_eq!(de.timestamp_us("05.03.2024 10:30:00"), Some(us(2024, 3, 5, 10, 30)));
        assert_eq!(
            de.date_days("05.03.2024"),
            Some(timefmt::days_since_epoch(NaiveDate::from_ymd_opt(2024, 3, 5).unwrap()))
        );
        assert_eq!(us_.timestamp_us("Jan 15, 2024"), Some(us(2024, 1, 15, 0, 0)));
        assert_eq!(gb.timestamp_us("15 Jan 2024"), Some(us(2024, 1, 15, 0, 0)));
        assert_eq!(us_.timestamp_us("13/15/2024"), None);
        // ISO values still read with any locale.
        assert_eq!(de.timestamp_us("2024-03-05T10:30:00Z"), Some(us(2024, 3, 5, 10, 30)));
    }

    #[test]
    fn explicit_formats_come_first_and_keep_the_zone() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let o = ParseOptions {
            formats: vec!["%d/%m/%Y %Hh%M".into()],
            ..ParseOptions::new(paris)
        };
        assert_eq!(o.timestamp_us("05/03/2024 10h30"), Some(us(2024, 3, 5, 9, 30)));
        assert_eq!(o.timestamp_us("2024-03-05T10:30:00Z"), Some(us(2024, 3, 5, 10, 30)));
    }

    #[test]
    fn durations_in_seconds_or_clock_form() {
        let o = ParseOptions::new(chrono_tz::UTC);
        assert_eq!(o.duration_s("00:30"), Some(1800));
        assert_eq!(o.duration_s("1:05:09"), Some(3909));
        assert_eq!(o.duration_s("90"), Some(90));
        assert_eq!(o.duration_s("0:75"), None);
        assert_eq!(o.duration_s("1::2"), None);
        assert_eq!(o.duration_s("half an hour"), None);
    }
}
