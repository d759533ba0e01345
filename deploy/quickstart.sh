#!/usr/bin/env bash
# Quick start: builds Vigil and runs the collector, a local agent and the
# default rule pack on embedded defaults, in the foreground. The agent also
# scrapes the collector's own /metrics (job vigil, deploy/quickstart-agent.yaml)
# so the self-monitoring rules work. Ctrl-C stops both. Data goes to ./data
# (collector) and ./data-agent (agent).
#
# Needs cargo (https://rustup.rs) unless VIGIL_BIN_DIR is set; the first
# release build takes several minutes. If either process cannot start (a
# port in use, a data directory held by another Vigil) it says which and
# why, stops what it started and exits non-zero.
#
# Environment (all optional):
#   VIGIL_BIN_DIR         directory holding built vigil and vigil-agent
#                         binaries (skips the cargo build)
#   VIGIL_PORT            collector port (default 9800)
#   VIGIL_AGENT_PORT      agent port (default 9801)
#   VIGIL_DATA_DIR        collector data (default ./data)
#   VIGIL_AGENT_DATA_DIR  agent buffer (default ./data-agent)
set -euo pipefail
cd "$(dirname "$0")/.."

port=${VIGIL_PORT:-9800}
agent_port=${VIGIL_AGENT_PORT:-9801}
data_dir=${VIGIL_DATA_DIR:-data}
agent_data_dir=${VIGIL_AGENT_DATA_DIR:-data-agent}

fail() {
    printf 'quickstart: %s\n' "$*" >&2
    exit 1
}

# Something already answering on a port would make the readiness checks
# below succeed for a process that is not ours: refuse up front.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for p in "$port" "$agent_port"; do
    if port_in_use "$p"; then
        fail "port $p on 127.0.0.1 is already in use (another Vigil quick start, or another program); stop it, or set VIGIL_PORT / VIGIL_AGENT_PORT"
    fi
done

if [ -n "${VIGIL_BIN_DIR:-}" ]; then
    bin=$VIGIL_BIN_DIR
else
    command -v cargo >/dev/null 2>&1 \
        || fail "cargo not found: install Rust (https://rustup.rs), or set VIGIL_BIN_DIR to a directory with built binaries"
    echo "quickstart: building vigil and vigil-agent (release; the first build takes several minutes)"
    cargo build --release --bin vigil --bin vigil-agent
    bin=${CARGO_TARGET_DIR:-target}/release
fi
for b in vigil vigil-agent; do
    [ -x "$bin/$b" ] || fail "$bin/$b is missing or not executable"
done

rule_args=()
rule_files=0
for f in rules/*.rules.yml rules/anomaly/*.yml; do
    [ -e "$f" ] && rule_args+=(--rule-file "$f") && rule_files=$((rule_files + 1))
done

collector=
agent=
agent_config=
cleanup() {
    for pid in $agent $collector; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    [ -z "$agent_config" ] || rm -f "$agent_config"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_up NAME PID URL: until URL answers while PID is alive; fails with
# the process's exit status when it dies first (its own error is above).
wait_up() {
    local name=$1 pid=$2 url=$3
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            local status=0
            wait "$pid" || status=$?
            fail "the $name failed to start (exit status $status); its error is above"
        fi
        if curl -fsS "$url" >/dev/null 2>&1; then
            # Answered: make sure it is still ours that runs.
            kill -0 "$pid" 2>/dev/null && return 0
        fi
        sleep 0.2
    done
    fail "the $name did not answer on $url within 60 s"
}

"$bin/vigil" serve --listen "127.0.0.1:$port" --data-dir "$data_dir" "${rule_args[@]}" &
collector=$!
wait_up collector "$collector" "http://127.0.0.1:$port/-/ready"

agent_args=()
if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    agent_args+=(--postgres "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
fi
if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    agent_args+=(--redis redis://127.0.0.1:6379)
fi
# The agent scrapes the collector wherever it listens.
agent_config=$(mktemp "${TMPDIR:-/tmp}/vigil-quickstart-agent.XXXXXX.yaml")
sed "s/127\.0\.0\.1:9800/127.0.0.1:$port/g" deploy/quickstart-agent.yaml >"$agent_config"
"$bin/vigil-agent" --config "$agent_config" --listen "127.0.0.1:$agent_port" \
    --remote-write "http://127.0.0.1:$port/api/v1/write" --data-dir "$agent_data_dir" \
    "${agent_args[@]}" &
agent=$!
wait_up agent "$agent" "http://127.0.0.1:$agent_port/-/healthy"

cat <<MSG

Vigil is running.
  collector (Prometheus API, remote_write, Alertmanager API): http://127.0.0.1:$port
  web UI: http://127.0.0.1:$port/
  agent (/metrics, OTLP /v1/metrics, LLM usage /v1/llm/usage): http://127.0.0.1:$agent_port
    ships host metrics (job vigil-agent, instance $(cat /proc/sys/kernel/hostname 2>/dev/null || hostname))
    and the collector's own metrics (job vigil) to the collector, which watches it:
    http://127.0.0.1:$port/api/vigil/v1/agents, up{job="vigil-agent"}, alert AgentDown
  Grafana: add a Prometheus data source with URL http://127.0.0.1:$port and HTTP method POST,
           or provision dashboards/provisioning/ (dashboards in dashboards/*.json).
  Rule files loaded: ${rule_files}; see http://127.0.0.1:$port/api/v1/rules
Press Ctrl-C to stop.
MSG

# Either one stopping ends the quick start: say which.
status=0
wait -n "$collector" "$agent" || status=$?
if ! kill -0 "$collector" 2>/dev/null; then
    fail "the collector stopped (exit status $status); stopping the agent"
fi
fail "the agent stopped (exit status $status); stopping the collector"
