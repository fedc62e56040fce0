#!/usr/bin/env bash
# Writes the files generated from the KPI registry (src/kpi/<family>.rs): docs/kpis.md and the
# README's catalog table, and accepts the `list --long` snapshot. Run it after changing a KPI's
# entry; `cargo test` fails until the checked-in copies match the registry.
set -euo pipefail
cd "$(dirname "$0")/.."
CRM_KPI_BLESS=1 INSTA_UPDATE=always cargo test --locked --test it -- generated_docs_match_the_registry list_long_snapshot
git status --short docs/kpis.md README.md tests/it/snapshots/
