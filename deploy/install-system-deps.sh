#!/usr/bin/env bash
# Installs the system tools the local runner needs when they are missing: Java 17+ (the Kafka broker and
# the local Keycloak), Maven (fetches the broker's jars and Keycloak once), make, and Chromium (the
# console's browser tests drive it through Playwright, which downloads no browser of its own). Uses
# apt-get when run as root on Debian/Ubuntu; elsewhere it says what to install. PostgreSQL needs nothing
# here: it comes from a pip wheel.
set -euo pipefail

java_ok() {
    command -v java >/dev/null 2>&1 || return 1
    local major
    major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [ -n "$major" ] && [ "$major" -ge 17 ]
}

missing=()
java_ok || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v make >/dev/null 2>&1 || missing+=(make)
command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    java_ok || { echo "Java 17+ is required: the installed java is older" >&2; exit 1; }
else
    echo "Please install: ${missing[*]} (Java 17+, Maven, make, Chromium)" >&2
    exit 1
fi
