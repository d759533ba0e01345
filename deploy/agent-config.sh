#!/bin/sh
# Prints a vigil-agent configuration for this host on standard output: what
# the host has is enabled, everything else is written commented out with how
# to turn it on. deploy/install.sh and the Debian package write it to
# /etc/vigil/agent.yml when that file does not exist yet. Every key the agent
# accepts is documented in deploy/agent.example.yaml (installed as
# /usr/share/doc/vigil/examples/agent.yml).
#
#   agent-config.sh [--remote-write URL] [--scrape-collector HOST:PORT]
#
# --remote-write        where samples go (default http://127.0.0.1:9800/api/v1/write)
# --scrape-collector    also scrape the collector's own /metrics (job vigil),
#                       for its self-monitoring rules; only on its host
#
# The host's name is not written: the agent labels its series
# instance=<host name> (and job=vigil-agent) by itself, so a cloned image or
# a renamed host stays right. PostgreSQL on 127.0.0.1:5432 is enabled only
# when a password-less query as user postgres succeeds (psql -w), Redis on
# 127.0.0.1:6379 only when it answers PING without a password (redis-cli):
# a section that could not work would only raise PostgresDown/RedisDown.
set -eu

PROG=${0##*/}
URL=http://127.0.0.1:9800/api/v1/write
COLLECTOR=

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --remote-write) [ $# -ge 2 ] || die "--remote-write needs a URL"; URL=$2; shift 2 ;;
        --remote-write=*) URL=${1#*=}; shift ;;
        --scrape-collector) [ $# -ge 2 ] || die "--scrape-collector needs HOST:PORT"; COLLECTOR=$2; shift 2 ;;
        --scrape-collector=*) COLLECTOR=${1#*=}; shift ;;
        -h|--help) sed -n '2,21s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

postgres_works() {
    command -v psql >/dev/null 2>&1 || return 1
    out=$(PGCONNECT_TIMEOUT=3 psql -w -X -q -h 127.0.0.1 -p 5432 -U postgres -d postgres \
        -tAc 'select 1' 2>/dev/null) || return 1
    [ "$out" = 1 ]
}

postgres_answers() {
    command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 -t 3 2>/dev/null
}

redis_works() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    out=$(timeout 3 redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) || return 1
    [ "$out" = PONG ]
}

cat <<EOF_HEAD
# vigil-agent configuration written for this host by deploy/agent-config.sh.
# Every key, with its default, is described in
# /usr/share/doc/vigil/examples/agent.yml (deploy/agent.example.yaml).
# The agent's own series carry job=vigil-agent and instance=<this host's
# name> by default; name the host yourself only when host names are not
# unique (see the example for how).

listen: 127.0.0.1:9801

# external_labels:
#   cluster: eu-1

remote_write:
  url: $URL
  # bearer_token_file: /run/credentials/vigil-agent.service/vigil-ingest-token

# Host metrics (node_exporter's names).
system:
  enabled: true

# LLM usage: OTLP on POST /v1/metrics, usage events on POST /v1/llm/usage.
# Cost comes from a built-in table of list prices; add or override models:
# llm:
#   prices:
#     my-finetune: {input: 3, output: 15}

EOF_HEAD

if postgres_works; then
    cat <<'EOF_PG'
# PostgreSQL answered a password-less query as user postgres at install.
postgres:
  - dsn: host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable
EOF_PG
else
    if postgres_answers; then
        echo "# PostgreSQL answers on 127.0.0.1:5432 but needs credentials: create a"
        echo "# monitoring role (GRANT pg_monitor) and uncomment with its password file."
    else
        echo "# No PostgreSQL answered on 127.0.0.1:5432 at install."
    fi
    cat <<'EOF_PG'
# postgres:
#   - dsn: host=127.0.0.1 port=5432 user=vigil dbname=postgres sslmode=disable
#     password_file: /run/credentials/vigil-agent.service/vigil-postgres-password
EOF_PG
fi
echo

if redis_works; then
    cat <<'EOF_REDIS'
# Redis answered PING without a password at install.
redis:
  - url: redis://127.0.0.1:6379
EOF_REDIS
else
    cat <<'EOF_REDIS'
# No Redis answered PING without a password on 127.0.0.1:6379 at install.
# redis:
#   - url: redis://127.0.0.1:6379
#     password_file: /run/credentials/vigil-agent.service/vigil-redis-password
EOF_REDIS
fi
echo

if [ -n "$COLLECTOR" ]; then
    cat <<EOF_SCRAPE
# The collector's own /metrics (job vigil), for its self-monitoring rules.
# Add your services' Prometheus endpoints as further jobs.
scrape:
  - job: vigil
    targets: [$COLLECTOR]
EOF_SCRAPE
else
    cat <<'EOF_SCRAPE'
# Your services' Prometheus endpoints:
# scrape:
#   - job: api
#     targets: [127.0.0.1:8080]
EOF_SCRAPE
fi
