#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a used one: installs what the
# tests need (Debian packages, Python packages), starts PostgreSQL and Redis
# if they are not running, then runs every test of the workspace. Tests do
# not skip: a tool missing here makes its test fail with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

need_apt=()
for pair in prometheus:prometheus promtool:prometheus prometheus-alertmanager:prometheus-alertmanager \
    amtool:prometheus-alertmanager prometheus-node-exporter:prometheus-node-exporter \
    prometheus-postgres-exporter:prometheus-postgres-exporter prometheus-redis-exporter:prometheus-redis-exporter \
    redis-server:redis-server psql:postgresql-client openssl:openssl \
    systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver \
    victoria-metrics:victoria-metrics python3:python3 pip3:python3-pip; do
    bin=${pair%%:*}; pkg=${pair#*:}
    command -v "$bin" >/dev/null 2>&1 || need_apt+=("$pkg")
done
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# Time intervals with a `location` read the IANA zone files.
[ -e /usr/share/zoneinfo/Europe/Berlin ] || need_apt+=(tzdata)
if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Packaged services must not grab their default ports in the test run.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u)
    rm -f /usr/sbin/policy-rc.d
fi

log "checking PostgreSQL and Redis"
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    if ls /etc/postgresql/*/main >/dev/null 2>&1; then
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432"; exit 1; }
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping

log "Python packages for the peer tests (scikit-learn, aiosmtpd, OpenTelemetry SDK, Prometheus client)"
# prometheus-client instruments tests/fixtures/api_service.py (dashboards test).
py_pkgs=(scikit-learn aiosmtpd opentelemetry-sdk opentelemetry-exporter-otlp-proto-http prometheus-client)
if ! python3 -c 'import sklearn, aiosmtpd, opentelemetry.exporter.otlp.proto.http, prometheus_client' 2>/dev/null; then
    # Debian's own python3 refuses pip without --break-system-packages (PEP 668).
    python3 -m pip install --quiet --disable-pip-version-check "${py_pkgs[@]}" ||
        python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${py_pkgs[@]}"
fi
# The Kubernetes manifests' schema check (tests/tests/kubernetes.rs).
command -v kubernetes-validate >/dev/null 2>&1 || \
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages kubernetes-validate

log "building"
cargo build --workspace --bins --tests

log "running the test suite"
cargo test --workspace --no-fail-fast
