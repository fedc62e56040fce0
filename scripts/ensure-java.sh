#!/usr/bin/env bash
# Installs a Java 17 runtime with apt-get when `java` is missing (pyspark needs one).
set -euo pipefail
if ! command -v java >/dev/null; then
  apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi
