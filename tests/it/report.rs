//! `crm-kpi report` on the sample store: one self-contained HTML file, its headline tiles equal
//! to the KPI outputs, outputs reused when they are fresh. (Rendering in a browser:
//! scripts/report-check.sh, in CI.)

use polars::prelude::*;

use crate::common::*;
use crate::fixtures::read_output;

/// The value of an attribute in the element that has `marker` (e.g. `data-tile="win_rate"`).
fn attr(html: &str, marker: &str, name: &str) -> String {
    let at = html.find(marker).unwrap_or_else(|| panic!("no {marker} in the report"));
    let tag_end = at + html[at..].find('>').unwrap();
    let tag_start = html[..at].rfind('<').unwrap();
    let tag = &html[tag_start..tag_end];
    let key = format!(" {name}=\"");
    let from = tag.find(&key).unwrap_or_else(|| panic!("no {name} in {tag}")) + key.len();
    tag[from..from + tag[from..].find('"').unwrap()].to_string()
}

#[test]
fn the_report_is_one_file_with_tiles_equal_to_the_kpi_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (out, html) = (dir.path().join("out"), dir.path().join("r.html"));
    let args = [
        "report",
        "--store",
        "data/store",
        "--out",
        s(&out),
        "--as-of",
        "2026-06-30",
        "-o",
        s(&html),
    ];
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    // The KPIs the empty output folder lacked were run first, and left there.
    assert!(
        stdout(&o).contains("18 KPIs as of 2026-06-30 written"),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch when opened.
    for external in ["src=", "href=", "<link", "@import", "url(http"] {
        assert!(
            !text.contains(external),
            "the report refers to something outside it: {external}"
        );
    }
    for id in [
        "headline",
        "funnel",
        "time-in-stage",
        "cohorts",
        "pipeline",
        "trends",
        "reps",
        "clv",
    ] {
        assert!(text.contains(&format!("<section id=\"{id}\"")), "no section {id}");
    }
    assert!(text.matches("<svg class=\"chart\"").count() >= 10);
    // Every tile's number is the output's, for the period the tile names.
    let trends = read_output(&out, "trends", "month", "2026-06-30");
    for series in ["won_revenue", "win_rate", "deals_won", "mean_deal_size", "new_leads"] {
        let marker = format!("data-tile=\"{series}\"");
        let period = attr(&text, &marker, "data-period");
        let shown: f64 = attr(&text, &marker, "data-value").parse().unwrap();
        let want = trends
            .clone()
            .lazy()
            .filter(
                col("series")
                    .eq(lit(series))
                    .and(col("period_start").cast(DataType::String).eq(lit(period.clone()))),
            )
            .collect()
            .unwrap();
        assert_eq!(want.height(), 1, "{series} {period}");
        assert_eq!(
            want.column("value").unwrap().f64().unwrap().get(0),
            Some(shown),
            "{series}"
        );
    }
    // The last complete month at 2026-06-30 (its end) is June itself.
    assert_eq!(attr(&text, "data-tile=\"won_revenue\"", "data-period"), "2026-06-01");
    assert!(text.contains("data-footer=\"as_of\">2026-06-30<"));

    // A second report reads the outputs (no run) and writes the same bytes.
    let o = run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("KPIs as of"), "{}", stdout(&o));
    assert_eq!(std::fs::read_to_string(&html).unwrap(), text);
    // Another as_of instant of the same day: computed again.
    let mut other = args;
    other[6] = "2026-06-30T12:00:00Z";
    let o = run(&other);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("18 KPIs as of 2026-06-30 written"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_missing_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["report", "--store", "nowhere", "-o", "r.html"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("nowhere"), "{}", stderr(&o));
    assert!(!dir.path().join("r.html").exists());
}
