#!/usr/bin/env bash
# DynamoDB Local needs a Java runtime (17+). Install Debian's when it is missing and we can.
set -euo pipefail
if command -v java >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "java not found: installing Debian's openjdk-17-jre-headless" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openjdk-17-jre-headless >/dev/null
  command -v java >/dev/null 2>&1 && exit 0
fi
echo "error: java is required for DynamoDB Local: install openjdk-17-jre-headless (apt-get install openjdk-17-jre-headless)" >&2
exit 1
