"""Checks a report as Chromium rendered it (`--dump-dom`): no script error on the page or in
the browser's console log, a drawn chart in every section, and every headline tile's number
equal to the KPI output it shows. Usage: report_check.py DOM.html CHROME.log OUT AS_OF"""

import json
import sys
from html.parser import HTMLParser

import polars as pl

SECTIONS = ["headline", "funnel", "time-in-stage", "cohorts", "pipeline", "trends", "reps", "clv"]
CHART_SECTIONS = [s for s in SECTIONS if s != "headline"]


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = {}
        self.section = None
        self.depth = 0
        self.charts = {}  # section -> [number of marks per chart]
        self.svg = None
        self.tiles = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.root = a
        if tag == "section":
            self.section = a.get("id")
        if tag == "svg" and "chart" in (a.get("class") or "").split():
            self.charts.setdefault(self.section, []).append(0)
            self.svg = True
        elif self.svg and tag in ("path", "rect", "circle", "line"):
            self.charts[self.section][-1] += 1
        if tag == "div" and a.get("data-tile"):
            self.tiles.append(a)

    def handle_endtag(self, tag):
        if tag == "svg":
            self.svg = None
        if tag == "section":
            self.section = None


def main(dom, log, out, as_of):
    p = Page()
    with open(dom, encoding="utf-8") as f:
        p.feed(f.read())
    problems = []
    errors = json.loads(p.root.get("data-errors", "null") or "null")
    if errors is None:
        problems.append("the page's script did not run (no data-errors on <html>)")
    elif errors:
        problems.append(f"script errors on the page: {errors}")
    with open(log, encoding="utf-8", errors="replace") as f:
        console = [line.strip() for line in f if "CONSOLE" in line or "Uncaught" in line]
    if console:
        problems.append(f"console messages: {console[:5]}")
    for s in CHART_SECTIONS:
        marks = p.charts.get(s, [])
        if not marks or max(marks) < 3:
            problems.append(f"section {s}: no drawn chart (marks per chart: {marks})")
    drawn = int(p.root.get("data-charts", "0"))
    total = sum(len(v) for v in p.charts.values())
    if drawn != total:
        problems.append(f"{drawn} of {total} charts have content")

    def kpi(name):
        return pl.read_parquet(f"{out}/{name}/grain=month/as_of={as_of}/part-0.parquet")

    if len(p.tiles) != 7:
        problems.append(f"{len(p.tiles)} headline tiles, expected 7")
    for t in p.tiles:
        period = pl.lit(t["data-period"]).str.to_date()
        name = t["data-tile"]
        if t["data-kpi"] == "trends":
            df = kpi("trends").filter((pl.col("series") == name) & (pl.col("period_start") == period))
            col = "value"
        elif name == "lead_velocity_rate":
            df = kpi("lead_velocity_rate").filter(pl.col("period_start") == period)
            col = "lvr"
        else:
            df = kpi("sales_cycle").filter(
                (pl.col("period_start") == period) & (pl.col("dimension") == "all") & (pl.col("outcome") == "won")
            )
            col = "median_days"
        want = df[col].to_list() if df.height == 1 else [None]
        have = None if t["data-value"] == "null" else float(t["data-value"])
        if want[0] != have:
            problems.append(f"tile {name} ({t['data-period']}): shows {have}, {t['data-kpi']} says {want[0]}")
        else:
            print(f"tile {name:<20} {t['data-period']}: {have} = {t['data-kpi']}")
    for s in CHART_SECTIONS:
        print(f"section {s:<14} charts {len(p.charts.get(s, []))}, marks {sum(p.charts.get(s, []))}")
    if problems:
        print("report-check: FAILED", *problems, sep="\n  ", file=sys.stderr)
        sys.exit(1)
    print(f"report-check: {drawn} charts drawn, {len(p.tiles)} tiles equal to the KPI outputs, no errors")


if __name__ == "__main__":
    main(*sys.argv[1:5])
