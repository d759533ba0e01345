#!/usr/bin/env bash
# Quick start: builds Vigil and runs the collector, a local agent and the
# default rule pack on embedded defaults, in the foreground. The agent also
# scrapes the collector's own /metrics (job vigil, deploy/quickstart-agent.yaml)
# so the self-monitoring rules work. Ctrl-C stops both. Data goes to ./data
# (collector) and ./data-agent (agent).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin vigil --bin vigil-agent
bin=${CARGO_TARGET_DIR:-target}/release

rule_args=()
rule_files=0
for f in rules/*.rules.yml rules/anomaly/*.yml; do
    [ -e "$f" ] && rule_args+=(--rule-file "$f") && rule_files=$((rule_files + 1))
done

"$bin/vigil" serve "${rule_args[@]}" &
collector=$!
agent_args=()
if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    agent_args+=(--postgres "host=127.0.0.1 port=5432 user=postgres dbname=postgres")
fi
if command -v redis-cli >/dev/null 2>&1 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    agent_args+=(--redis redis://127.0.0.1:6379)
fi
"$bin/vigil-agent" --config deploy/quickstart-agent.yaml "${agent_args[@]}" &
agent=$!
trap 'kill -TERM $agent $collector 2>/dev/null; wait' INT TERM EXIT

for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:9800/-/ready >/dev/null 2>&1 && break
    sleep 0.2
done
cat <<MSG

Vigil is running.
  collector (Prometheus API, remote_write, Alertmanager API): http://127.0.0.1:9800
  agent (/metrics, OTLP /v1/metrics, LLM usage /v1/llm/usage): http://127.0.0.1:9801
    ships host metrics and the collector's own metrics (job vigil) to the collector
  Grafana: add a Prometheus data source with URL http://127.0.0.1:9800 and HTTP method POST,
           or provision dashboards/provisioning/ (dashboards in dashboards/*.json).
  Rule files loaded: ${rule_files}; see http://127.0.0.1:9800/api/v1/rules
Press Ctrl-C to stop.
MSG
wait
