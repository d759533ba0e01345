#!/usr/bin/env python3
"""Writes Vigil's Grafana dashboards (dashboards/*.json) from the panel
definitions below.

The JSON files are committed, so Grafana and the tests need nothing but
them; this script exists so that the dashboards share one layout, one
set of variables and one datasource convention instead of hand-edited
copies drifting apart. Edit the definitions here, run

    python3 dashboards/generate.py          # rewrite the JSON files
    python3 dashboards/generate.py --check  # exit 1 if a JSON file is stale

and commit both. `tests/tests/dashboards.rs` checks the JSON (valid, unique
uids and panel ids, every query parses as PromQL and returns data against a
collector fed by a real agent, except panels marked event-only).

Conventions:
- every panel and target uses the `${datasource}` variable (type
  prometheus), so the same dashboard works against Vigil, or against Mimir /
  VictoriaMetrics / Thanos in the distributed topology;
- `job` and `instance` (and per-dashboard filters) are multi-value query
  variables from `label_values(...)` whose "All" value is `.*`, so a series
  without the label still matches;
- rates use `$__rate_interval`; totals over the picked range use `$__range`;
- a panel that only has data when something happens (an alert fires, an
  anomaly model is trained) says so in its description with the marker
  EVENT_ONLY below; the tests then accept an empty result for it.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 39
DS = {"type": "prometheus", "uid": "${datasource}"}
EVENT_ONLY = "Event-only:"


def var_datasource():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "options": [],
        "description": "The Vigil collector, or a Prometheus-compatible store it forwards to.",
    }


def var_query(name, label, query, description=""):
    """A multi-value label_values variable whose All value matches series
    that lack the label too."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "sort": 1,
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "options": [],
        "regex": "",
        "hide": 0,
        "description": description,
    }


def target(ref, expr, legend="", instant=False):
    t = {
        "refId": ref,
        "datasource": DS,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "editorMode": "code",
    }
    if instant:
        t["format"] = "table"
    return t


class Layout:
    """Places panels left to right on Grafana's 24-column grid."""

    def __init__(self):
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1
        self.panels = []

    def add(self, panel, w, h):
        if self.x + w > 24:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        panel["id"] = self.next_id
        self.next_id += 1
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)

    def row(self, title):
        if self.x:
            self.x = 0
            self.y += self.row_h
            self.row_h = 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)


def panel(kind, title, description, targets, unit="short", **options):
    p = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": [t if isinstance(t, dict) else target(chr(ord("A") + i), *t) for i, t in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "spanNulls": False}
        p["options"] = {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True}, "tooltip": {"mode": "multi", "sort": "desc"}}
    elif kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value", "graphMode": "area", "textMode": "auto"}
    elif kind == "table":
        p["options"] = {"showHeader": True, "cellHeight": "sm"}
        p["transformations"] = [{"id": "organize", "options": {"excludeByName": {"Time": True}}}]
        if len(p["targets"]) > 1:
            # One row per series with a column per query (Value #A, #B…).
            p["transformations"].insert(0, {"id": "merge", "options": {}})
    elif kind == "bargauge":
        p["options"] = {"orientation": "horizontal", "displayMode": "gradient", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    if "min" in options:
        p["fieldConfig"]["defaults"]["min"] = options["min"]
    if "max" in options:
        p["fieldConfig"]["defaults"]["max"] = options["max"]
    if "thresholds" in options:
        steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in options["thresholds"]]
        p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": steps}
    return p


def dashboard(uid, title, description, tags, variables, layout, refresh="30s", time_from="now-6h"):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["vigil"] + tags,
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": refresh,
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                },
                {
                    "datasource": DS,
                    "enable": True,
                    "iconColor": "red",
                    "name": "Firing alerts",
                    "expr": 'ALERTS{alertstate="firing"}',
                    "titleFormat": "{{alertname}}",
                    "textFormat": "{{severity}} {{instance}}",
                    "step": "1m",
                    "useValueForTime": False,
                },
            ]
        },
        "links": [{"type": "dashboards", "tags": ["vigil"], "asDropdown": True, "title": "Vigil", "includeVars": True, "keepTime": True}],
        "templating": {"list": [var_datasource()] + variables},
        "panels": layout.panels,
    }


# --------------------------------------------------------------------- host
def host():
    s = 'instance=~"$instance",job=~"$job"'
    cpu_count = f'count by (instance) (node_cpu_seconds_total{{mode="idle",{s}}})'
    fs = f'fstype!~"tmpfs|ramfs|squashfs",{s}'
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Uptime", "Time since boot (node_boot_time_seconds).",
                [(f"time() - node_boot_time_seconds{{{s}}}", "{{instance}}")], "s"), 6, 4)
    L.add(panel("stat", "CPU busy", "Share of CPU time not idle, all cores, over $__rate_interval.",
                [(f'100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle",{s}}}[$__rate_interval])))', "{{instance}}")],
                "percent", min=0, max=100, thresholds=[(80, "orange"), (95, "red")]), 6, 4)
    L.add(panel("stat", "Memory used", "1 − MemAvailable / MemTotal: memory the kernel cannot hand out without swapping.",
                [(f"100 * (1 - node_memory_MemAvailable_bytes{{{s}}} / node_memory_MemTotal_bytes{{{s}}})", "{{instance}}")],
                "percent", min=0, max=100, thresholds=[(85, "orange"), (95, "red")]), 6, 4)
    L.add(panel("stat", "Load per CPU", "1-minute load average divided by the number of CPUs; above 1 means runnable work waits.",
                [(f"node_load1{{{s}}} / on (instance) {cpu_count}", "{{instance}}")], "short", thresholds=[(1, "orange"), (2, "red")]), 6, 4)
    L.row("CPU and memory")
    L.add(panel("timeseries", "CPU by mode", "Share of all cores' time spent in each non-idle mode.",
                [(f'sum by (instance, mode) (rate(node_cpu_seconds_total{{mode!="idle",{s}}}[$__rate_interval])) / on (instance) group_left {cpu_count}',
                  "{{instance}} {{mode}}")], "percentunit", min=0), 12, 8)
    L.add(panel("timeseries", "Load average", "node_load1, node_load5 and node_load15.",
                [(f"node_load1{{{s}}}", "{{instance}} 1m"), (f"node_load5{{{s}}}", "{{instance}} 5m"), (f"node_load15{{{s}}}", "{{instance}} 15m")]), 12, 8)
    L.add(panel("timeseries", "Memory", "Used (total − available), available, and swap in use.",
                [(f"node_memory_MemTotal_bytes{{{s}}} - node_memory_MemAvailable_bytes{{{s}}}", "{{instance}} used"),
                 (f"node_memory_MemAvailable_bytes{{{s}}}", "{{instance}} available"),
                 (f"node_memory_SwapTotal_bytes{{{s}}} - node_memory_SwapFree_bytes{{{s}}}", "{{instance}} swap used")], "bytes", min=0), 12, 8)
    L.add(panel("timeseries", "Pressure stall (PSI)",
                "Share of time some task waited for CPU, memory or I/O (/proc/pressure). No data on kernels without PSI.",
                [(f"rate(node_pressure_cpu_waiting_seconds_total{{{s}}}[$__rate_interval])", "{{instance}} cpu"),
                 (f"rate(node_pressure_memory_waiting_seconds_total{{{s}}}[$__rate_interval])", "{{instance}} memory"),
                 (f"rate(node_pressure_io_waiting_seconds_total{{{s}}}[$__rate_interval])", "{{instance}} io")], "percentunit", min=0), 12, 8)
    L.row("Disks and filesystems")
    L.add(panel("timeseries", "Filesystem used", "Space used as seen by unprivileged users (1 − avail / size), per mount point.",
                [(f"100 * (1 - node_filesystem_avail_bytes{{{fs}}} / node_filesystem_size_bytes{{{fs}}})", "{{instance}} {{mountpoint}}")],
                "percent", min=0, max=100, thresholds=[(90, "orange"), (95, "red")]), 12, 8)
    L.add(panel("table", "Filesystems", "Size and free space per mount point, now.",
                [target("A", f"node_filesystem_size_bytes{{{fs}}}", instant=True),
                 target("B", f"node_filesystem_avail_bytes{{{fs}}}", instant=True)], "bytes"), 12, 8)
    L.add(panel("timeseries", "Disk throughput", "Bytes read and written per second, per device.",
                [(f"rate(node_disk_read_bytes_total{{{s}}}[$__rate_interval])", "{{instance}} {{device}} read"),
                 (f"-rate(node_disk_written_bytes_total{{{s}}}[$__rate_interval])", "{{instance}} {{device}} write")], "Bps"), 12, 8)
    L.add(panel("timeseries", "Disk busy", "Share of time the device had I/O in flight (io_time).",
                [(f"rate(node_disk_io_time_seconds_total{{{s}}}[$__rate_interval])", "{{instance}} {{device}}")], "percentunit", min=0), 12, 8)
    L.row("Network")
    net = f'device!~"lo|veth.*|docker.*|br-.*",{s}'
    L.add(panel("timeseries", "Network traffic", "Bytes received (up) and transmitted (down) per second, per interface.",
                [(f"rate(node_network_receive_bytes_total{{{net}}}[$__rate_interval])", "{{instance}} {{device}} rx"),
                 (f"-rate(node_network_transmit_bytes_total{{{net}}}[$__rate_interval])", "{{instance}} {{device}} tx")], "Bps"), 12, 8)
    L.add(panel("timeseries", "Network errors", "Receive and transmit errors per second.",
                [(f"rate(node_network_receive_errs_total{{{net}}}[$__rate_interval])", "{{instance}} {{device}} rx"),
                 (f"rate(node_network_transmit_errs_total{{{net}}}[$__rate_interval])", "{{instance}} {{device}} tx")], "short", min=0), 12, 8)
    L.row("Vigil agent")
    L.add(panel("timeseries", "Samples shipped", "Samples collected and sent per second by vigil-agent (remote_write).",
                [(f"rate(vigil_agent_samples_collected_total{{{s}}}[$__rate_interval])", "{{instance}} collected"),
                 (f"rate(vigil_agent_samples_sent_total{{{s}}}[$__rate_interval])", "{{instance}} sent")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Send buffer", "Bytes waiting in the agent's on-disk buffer; grows while the collector is unreachable.",
                [(f"vigil_agent_buffer_bytes{{{s}}}", "{{instance}}")], "bytes", min=0), 12, 8)
    return dashboard(
        "vigil-host", "Vigil / Host overview",
        "Host metrics from vigil-agent (node_exporter names): CPU, memory, pressure, filesystems, disks, network.",
        ["host", "node"],
        [var_query("job", "Job", "label_values(node_uname_info, job)"),
         var_query("instance", "Instance", 'label_values(node_uname_info{job=~"$job"}, instance)')],
        L)


# ----------------------------------------------------------------- postgres
def postgres():
    s = 'instance=~"$instance",job=~"$job",server=~"$server"'
    d = s + ',datname=~"$datname"'
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Up", "pg_up: 1 when the agent's last connection and queries succeeded.",
                [(f"pg_up{{{s}}}", "{{server}}")], "short", thresholds=[(1, "green")]), 6, 4)
    L.add(panel("stat", "Connections used", "Backends in any state as a share of max_connections.",
                [(f"100 * sum by (server) (pg_stat_activity_count{{{s}}}) / on (server) max by (server) (pg_settings_max_connections{{{s}}})", "{{server}}")],
                "percent", min=0, max=100, thresholds=[(80, "orange"), (95, "red")]), 6, 4)
    L.add(panel("stat", "Longest transaction", "Age of the oldest open transaction.",
                [(f"max by (server) (pg_stat_activity_max_tx_duration{{{s}}})", "{{server}}")], "s", thresholds=[(60, "orange"), (300, "red")]), 6, 4)
    L.add(panel("stat", "Replication lag", "Seconds behind the primary (0 on a primary).",
                [(f"max by (server) (pg_replication_lag_seconds{{{s}}})", "{{server}}")], "s"), 6, 4)
    L.row("Activity")
    L.add(panel("timeseries", "Connections by state", "pg_stat_activity grouped by state.",
                [(f"sum by (server, state) (pg_stat_activity_count{{{d}}})", "{{server}} {{state}}"),
                 (f"max by (server) (pg_settings_max_connections{{{s}}})", "{{server}} max_connections")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Transactions", "Commits and rollbacks per second.",
                [(f"sum by (server, datname) (rate(pg_stat_database_xact_commit{{{d}}}[$__rate_interval]))", "{{server}} {{datname}} commit"),
                 (f"sum by (server, datname) (rate(pg_stat_database_xact_rollback{{{d}}}[$__rate_interval]))", "{{server}} {{datname}} rollback")],
                "ops", min=0), 12, 8)
    hit = f"sum by (server, datname) (rate(pg_stat_database_blks_hit{{{d}}}[$__rate_interval]))"
    read = f"sum by (server, datname) (rate(pg_stat_database_blks_read{{{d}}}[$__rate_interval]))"
    L.add(panel("timeseries", "Buffer cache hit ratio", "blks_hit / (blks_hit + blks_read); empty while a database is idle (0/0).",
                [(f"{hit} / ({hit} + {read})", "{{server}} {{datname}}")], "percentunit", min=0, max=1), 12, 8)
    L.add(panel("timeseries", "Locks by mode", "Locks held or awaited, per mode.",
                [(f"sum by (server, mode) (pg_locks_count{{{d}}})", "{{server}} {{mode}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Deadlocks and temporary files", "Deadlocks per second and bytes spilled to temporary files per second.",
                [(f"sum by (server, datname) (rate(pg_stat_database_deadlocks{{{d}}}[$__rate_interval]))", "{{server}} {{datname}} deadlocks/s"),
                 (f"sum by (server, datname) (rate(pg_stat_database_temp_bytes{{{d}}}[$__rate_interval]))", "{{server}} {{datname}} temp B/s")],
                "short", min=0), 12, 8)
    L.add(panel("timeseries", "Longest transaction by database", "pg_stat_activity_max_tx_duration, the oldest transaction per database.",
                [(f"max by (server, datname) (pg_stat_activity_max_tx_duration{{{d}}})", "{{server}} {{datname}}")], "s", min=0), 12, 8)
    L.row("Storage and replication")
    L.add(panel("timeseries", "Database size", "pg_database_size per database.",
                [(f"pg_database_size_bytes{{{d}}}", "{{server}} {{datname}}")], "bytes", min=0), 12, 8)
    L.add(panel("timeseries", "Replication", "Lag behind the primary and whether the server is a replica.",
                [(f"pg_replication_lag_seconds{{{s}}}", "{{server}} lag"),
                 (f"pg_replication_is_replica{{{s}}}", "{{server}} is replica")], "s", min=0), 12, 8)
    return dashboard(
        "vigil-postgres", "Vigil / PostgreSQL",
        "PostgreSQL metrics from vigil-agent (postgres_exporter names).",
        ["postgresql"],
        [var_query("job", "Job", "label_values(pg_up, job)"),
         var_query("instance", "Instance", 'label_values(pg_up{job=~"$job"}, instance)'),
         var_query("server", "Server", 'label_values(pg_settings_max_connections{job=~"$job",instance=~"$instance"}, server)'),
         var_query("datname", "Database", 'label_values(pg_database_size_bytes{server=~"$server"}, datname)')],
        L)


# -------------------------------------------------------------------- redis
def redis():
    s = 'instance=~"$instance",job=~"$job"'
    hits = f"sum by (instance) (rate(redis_keyspace_hits_total{{{s}}}[$__rate_interval]))"
    misses = f"sum by (instance) (rate(redis_keyspace_misses_total{{{s}}}[$__rate_interval]))"
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Up", "redis_up: 1 when the agent's last INFO succeeded.",
                [(f"redis_up{{{s}}}", "{{instance}}")], "short"), 6, 4)
    L.add(panel("stat", "Uptime", "Seconds since the server started.",
                [(f"redis_uptime_in_seconds{{{s}}}", "{{instance}}")], "s"), 6, 4)
    L.add(panel("stat", "Cache hit ratio", "keyspace hits / (hits + misses) over $__rate_interval; the rule pack warns below 70%.",
                [(f"{hits} / ({hits} + {misses})", "{{instance}}")], "percentunit", min=0, max=1,
                thresholds=[(0, "red"), (0.7, "orange"), (0.9, "green")]), 6, 4)
    L.add(panel("stat", "Memory used", "Memory allocated by Redis (used_memory).",
                [(f"redis_memory_used_bytes{{{s}}}", "{{instance}}")], "bytes"), 6, 4)
    L.row("Traffic")
    L.add(panel("timeseries", "Commands", "Commands processed per second.",
                [(f"rate(redis_commands_processed_total{{{s}}}[$__rate_interval])", "{{instance}}")], "ops", min=0), 12, 8)
    L.add(panel("timeseries", "Hits and misses", "Keyspace lookups per second.",
                [(hits, "{{instance}} hits"), (misses, "{{instance}} misses")], "ops", min=0), 12, 8)
    L.add(panel("timeseries", "Clients", "Connected and blocked clients; rejected connections per second (maxclients reached).",
                [(f"redis_connected_clients{{{s}}}", "{{instance}} connected"),
                 (f"redis_blocked_clients{{{s}}}", "{{instance}} blocked"),
                 (f"rate(redis_rejected_connections_total{{{s}}}[$__rate_interval])", "{{instance}} rejected/s")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Evicted and expired keys", "Keys evicted (memory pressure) and expired (TTL) per second.",
                [(f"rate(redis_evicted_keys_total{{{s}}}[$__rate_interval])", "{{instance}} evicted"),
                 (f"rate(redis_expired_keys_total{{{s}}}[$__rate_interval])", "{{instance}} expired")], "ops", min=0), 12, 8)
    L.row("Memory and keys")
    L.add(panel("timeseries", "Memory", "Used memory and maxmemory (0 = unlimited).",
                [(f"redis_memory_used_bytes{{{s}}}", "{{instance}} used"),
                 (f"redis_memory_max_bytes{{{s}}}", "{{instance}} max")], "bytes", min=0), 12, 8)
    L.add(panel("timeseries", "Fragmentation ratio", "RSS / used memory; well above 1.5 wastes memory, below 1 means swapping.",
                [(f"redis_mem_fragmentation_ratio{{{s}}}", "{{instance}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Keys per database", "Keys in each logical database (INFO keyspace; a database without keys is not listed).",
                [(f"sum by (instance, db) (redis_db_keys{{{s}}})", "{{instance}} {{db}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Replicas", "Connected replicas of this server.",
                [(f"redis_connected_slaves{{{s}}}", "{{instance}}")], "short", min=0), 12, 8)
    return dashboard(
        "vigil-redis", "Vigil / Redis",
        "Redis metrics from vigil-agent (redis_exporter names).",
        ["redis"],
        [var_query("job", "Job", "label_values(redis_up, job)"),
         var_query("instance", "Instance", 'label_values(redis_up{job=~"$job"}, instance)')],
        L)


# ---------------------------------------------------------------------- llm
def range_total(metric, sel, by=None):
    """A counter's total over the dashboard's range, right from a series'
    first sample: increase() needs two samples, so a series born inside the
    range (a model's first call, an agent's first minute) would lose its
    first value and a series with one sample would count nothing. Series
    that existed at the range's start count their increase(); series born
    inside it count their whole value, as counters start at 0."""
    agg = f"sum by ({by})" if by else "sum"
    x = f"{metric}{{{sel}}}"
    old = f"{agg} (increase({x}[$__range]) and {x} offset $__range)"
    new = f"{agg} ({x} unless {x} offset $__range)"
    if by:
        return f"({old} + {new}) or {old} or {new}"
    return f"({old} or vector(0)) + ({new} or vector(0))"


def llm():
    s = 'instance=~"$instance",job=~"$job",provider=~"$provider",model=~"$model"'
    g = 'instance=~"$instance",job=~"$job",gen_ai_provider_name=~"$provider",gen_ai_request_model=~"$model"'
    req = f"rate(llm_requests_total{{{s}}}[$__rate_interval])"
    err = f'rate(llm_requests_total{{status!="ok",{s}}}[$__rate_interval])'
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Requests", "LLM calls per second, all selected models.",
                [(f"sum({req})", "requests/s")], "reqps"), 6, 4)
    L.add(panel("stat", "Error rate", "Share of calls that did not end ok (errors, timeouts, 429s); the rule pack warns above 1%.",
                [(f"sum({err}) / sum({req})", "errors")], "percentunit", min=0, thresholds=[(0.01, "orange"), (0.05, "red")]), 6, 4)
    L.add(panel("stat", "Tokens", "Input + output tokens per second (cached input and reasoning are parts of them).",
                [(f'sum(rate(llm_tokens_total{{type=~"input|output",{s}}}[$__rate_interval]))', "tokens/s")], "short"), 6, 4)
    L.add(panel("stat", "Cost over the range", "US dollars spent in the dashboard's time range, from the agent's price table.",
                [(range_total("llm_cost_usd_total", s), "USD")], "currencyUSD"), 6, 4)
    L.row("Requests and errors")
    L.add(panel("timeseries", "Requests by model and status", "Calls per second by provider, model and status.",
                [(f"sum by (provider, model, status) ({req})", "{{provider}}/{{model}} {{status}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Error rate by model", "Share of calls per model that did not end ok.",
                [(f"sum by (provider, model) ({err}) / sum by (provider, model) ({req})", "{{provider}}/{{model}}")],
                "percentunit", min=0, thresholds=[(0.01, "orange"), (0.05, "red")]), 12, 8)
    L.add(panel("timeseries", "Rate limited (429)", "HTTP 429 answers per second: the RPM/TPM quota is exhausted.",
                [(f"sum by (provider, model) (rate(llm_rate_limited_total{{{s}}}[$__rate_interval]))", "{{provider}}/{{model}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Errors by type", "Failed calls per second by status (error type).",
                [(f"sum by (provider, model, status) ({err})", "{{provider}}/{{model}} {{status}}")], "reqps", min=0), 12, 8)
    L.row("Latency")
    dur = f"rate(gen_ai_client_operation_duration_seconds_bucket{{{g}}}[$__rate_interval])"
    L.add(panel("timeseries", "Latency percentiles", "p50, p95 and p99 of gen_ai.client.operation.duration, all selected models.",
                [(f"histogram_quantile({q}, sum by (le) ({dur}))", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)], "s", min=0), 12, 8)
    L.add(panel("timeseries", "p95 latency by model", "95th percentile of the call duration per provider and model.",
                [(f"histogram_quantile(0.95, sum by (le, gen_ai_provider_name, gen_ai_request_model) ({dur}))",
                  "{{gen_ai_provider_name}}/{{gen_ai_request_model}}")], "s", min=0), 12, 8)
    L.add(panel("timeseries", "Queue depth", "LLM request queue length as last reported; the rule pack warns above 50.",
                [(f"max by (provider, model) (llm_queue_depth{{{s}}})", "{{provider}}/{{model}}")], "short", min=0,
                thresholds=[(50, "orange")]), 12, 8)
    tok = f"rate(gen_ai_client_token_usage_bucket{{{g}}}[$__rate_interval])"
    L.add(panel("timeseries", "Tokens per call (p50, p95)", "Distribution of tokens per call, input and output (gen_ai.client.token.usage).",
                [(f"histogram_quantile(0.5, sum by (le, gen_ai_token_type) ({tok}))", "p50 {{gen_ai_token_type}}"),
                 (f"histogram_quantile(0.95, sum by (le, gen_ai_token_type) ({tok}))", "p95 {{gen_ai_token_type}}")], "short", min=0), 12, 8)
    L.row("Tokens and cost")
    L.add(panel("timeseries", "Tokens by model", "Tokens per second by provider, model and type (input/output).",
                [(f"sum by (provider, model, type) (rate(llm_tokens_total{{{s}}}[$__rate_interval]))", "{{provider}}/{{model}} {{type}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Cost per hour by model", "Spend rate in US dollars per hour.",
                [(f"sum by (provider, model) (rate(llm_cost_usd_total{{{s}}}[$__rate_interval])) * 3600", "{{provider}}/{{model}}")],
                "currencyUSD", min=0), 12, 8)
    L.add(panel("bargauge", "Cost by model over the range", "US dollars per model in the dashboard's time range.",
                [target("A", f"sort_desc({range_total('llm_cost_usd_total', s, 'provider, model')})", "{{provider}}/{{model}}", instant=True)],
                "currencyUSD"), 12, 8)
    L.add(panel("table", "Unpriced models", "Calls to models missing from the agent's price table (their cost is not counted).",
                [target("A", f"({range_total('llm_unpriced_requests_total', s, 'provider, model')}) > 0", instant=True)],
                "short"), 12, 8)
    st = s + ',tenant=~"$tenant"'
    L.row("Tenants and budgets")
    L.add(panel("bargauge", "Cost by tenant over the range",
                "US dollars per tenant in the dashboard's time range. The agent keeps the top tenants by cost (llm.top_tenants) apart; "
                "the others are summed as tenant \"other\"; calls without a tenant have an empty one.",
                [target("A", f"sort_desc({range_total('llm_cost_usd_total', st, 'tenant')})", "{{tenant}}", instant=True)],
                "currencyUSD"), 12, 8)
    L.add(panel("timeseries", "Cost per hour by tenant", "Spend rate per tenant in US dollars per hour.",
                [(f"sum by (tenant) (rate(llm_cost_usd_total{{{st}}}[$__rate_interval])) * 3600", "{{tenant}}")],
                "currencyUSD", min=0), 12, 8)
    L.add(panel("table", "Budgets this month",
                "Per budget of the collector's llm.budgets: the monthly budget, the spend since the first of the month (UTC) "
                "and the spend forecast for the whole month at this month's pace.",
                [target("A", "max by (budget) (llm_budget_usd)", instant=True),
                 target("B", "max by (budget) (llm_spend_month_to_date_usd)", instant=True),
                 target("C", "max by (budget) (llm_spend_forecast_month_usd)", instant=True)],
                "currencyUSD"), 12, 8)
    L.add(panel("bargauge", "Budget used",
                "Month-to-date spend as a share of each budget; the rule pack pages at 100% and warns when the forecast passes it.",
                [target("A", "sort_desc(max by (budget) (llm_spend_month_to_date_usd) / max by (budget) (llm_budget_usd))", "{{budget}}", instant=True)],
                "percentunit", min=0, max=1, thresholds=[(0.8, "orange"), (1, "red")]), 12, 8)
    L.row("Prompt cache, reasoning and time to first token")
    L.add(panel("timeseries", "Prompt cache hit ratio",
                "Share of input tokens read from the prompt cache (cached_input / input) per model; cached tokens cost a fraction of input.",
                [(f'sum by (provider, model) (rate(llm_tokens_total{{type="cached_input",{st}}}[$__rate_interval]))'
                  f' / sum by (provider, model) (rate(llm_tokens_total{{type="input",{st}}}[$__rate_interval]))', "{{provider}}/{{model}}")],
                "percentunit", min=0, max=1), 12, 8)
    L.add(panel("timeseries", "Cached input and reasoning tokens",
                "Tokens per second read from the prompt cache (part of input) and spent reasoning (part of output), per model.",
                [(f'sum by (provider, model, type) (rate(llm_tokens_total{{type=~"cached_input|reasoning",{st}}}[$__rate_interval]))',
                  "{{provider}}/{{model}} {{type}}")], "short", min=0), 12, 8)
    ttft = f"rate(llm_time_to_first_token_seconds_bucket{{{s}}}[$__rate_interval])"
    L.add(panel("timeseries", "Time to first token (p50, p95)",
                "How long streamed calls wait for their first token or chunk, all selected models.",
                [(f"histogram_quantile({q}, sum by (le) ({ttft}))", f"p{int(q * 100)}") for q in (0.5, 0.95)], "s", min=0), 12, 8)
    L.add(panel("timeseries", "p95 time to first token by model", "95th percentile of the time to first token per provider and model.",
                [(f"histogram_quantile(0.95, sum by (le, provider, model) ({ttft}))", "{{provider}}/{{model}}")], "s", min=0), 12, 8)
    return dashboard(
        "vigil-llm", "Vigil / LLM usage",
        "LLM calls from usage events and OpenTelemetry GenAI metrics: requests, errors and 429s, latency, tokens, cost per model, queue depth.",
        ["llm", "genai"],
        [var_query("job", "Job", "label_values(llm_requests_total, job)"),
         var_query("instance", "Instance", 'label_values(llm_requests_total{job=~"$job"}, instance)'),
         var_query("provider", "Provider", 'label_values(llm_requests_total{instance=~"$instance"}, provider)'),
         var_query("model", "Model", 'label_values(llm_requests_total{instance=~"$instance",provider=~"$provider"}, model)'),
         var_query("tenant", "Tenant", 'label_values(llm_cost_usd_total{instance=~"$instance"}, tenant)')],
        L, refresh="1m", time_from="now-24h")


# ------------------------------------------------------------------- agents
def agents():
    s = 'instance=~"$instance",job=~"$job"'
    a = s + ',agent=~"$agent"'
    t = s + ',tool=~"$tool"'
    runs = f'rate(llm_agent_requests_total{{operation="invoke_agent",{a}}}[$__rate_interval])'
    failed_runs = f'rate(llm_agent_requests_total{{operation="invoke_agent",status!="ok",{a}}}[$__rate_interval])'
    calls = f"rate(llm_tool_calls_total{{{t}}}[$__rate_interval])"
    failed_calls = f'rate(llm_tool_calls_total{{status!="ok",{t}}}[$__rate_interval])'
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Agent runs", "invoke_agent operations per second, all selected agents.",
                [(f"sum({runs})", "runs/s")], "reqps"), 6, 4)
    L.add(panel("stat", "Failed runs", "Share of agent runs that ended in an error; the rule pack warns above 5%.",
                [(f"(sum({failed_runs}) or vector(0)) / sum({runs})", "failed")], "percentunit", min=0,
                thresholds=[(0.05, "orange")]), 6, 4)
    L.add(panel("stat", "Tool calls", "execute_tool operations per second, all selected tools.",
                [(f"sum({calls})", "calls/s")], "reqps"), 6, 4)
    L.add(panel("stat", "Failed tool calls", "Share of tool calls that failed; the rule pack warns above 10%.",
                [(f"(sum({failed_calls}) or vector(0)) / sum({calls})", "failed")], "percentunit", min=0,
                thresholds=[(0.1, "orange"), (0.25, "red")]), 6, 4)
    L.row("Agents")
    L.add(panel("timeseries", "Agent operations by agent and status",
                "Operations per second by agent name, operation (invoke_agent, create_agent, and the model calls an agent made) and status. "
                "Agents past the agent's top_agents are \"other\".",
                [(f"sum by (agent, operation, status) (rate(llm_agent_requests_total{{{a}}}[$__rate_interval]))",
                  "{{agent}} {{operation}} {{status}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Agent run duration (p95)", "95th percentile of the invoke_agent duration per agent.",
                [(f'histogram_quantile(0.95, sum by (le, agent) (rate(llm_agent_duration_seconds_bucket{{operation="invoke_agent",{a}}}[$__rate_interval])))',
                  "{{agent}}")], "s", min=0), 12, 8)
    L.add(panel("timeseries", "Model calls per agent", "LLM calls per second made on behalf of each agent (usage events that name it).",
                [(f'sum by (agent) (rate(llm_agent_requests_total{{operation!~"invoke_agent|create_agent",{a}}}[$__rate_interval]))',
                  "{{agent}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Failed runs by agent", "Agent runs per second that ended in an error, by error type.",
                [(f"sum by (agent, status) ({failed_runs})", "{{agent}} {{status}}")], "reqps", min=0), 12, 8)
    L.row("Tools")
    L.add(panel("timeseries", "Tool calls by tool and status",
                "Calls per second by tool name and status; tools past the agent's top_tools are \"other\".",
                [(f"sum by (tool, status) ({calls})", "{{tool}} {{status}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Tool failure ratio", "Share of each tool's calls that failed; the rule pack warns above 10%.",
                [(f"sum by (tool) ({failed_calls}) / sum by (tool) ({calls})", "{{tool}}")], "percentunit", min=0, max=1,
                thresholds=[(0.1, "orange"), (0.25, "red")]), 12, 8)
    L.add(panel("timeseries", "Tool call duration (p95)", "95th percentile of the tool call duration per tool.",
                [(f"histogram_quantile(0.95, sum by (le, tool) (rate(llm_tool_duration_seconds_bucket{{{t}}}[$__rate_interval])))",
                  "{{tool}}")], "s", min=0), 12, 8)
    L.add(panel("bargauge", "Tool calls over the range", "Calls per tool in the dashboard's time range.",
                [target("A", f"sort_desc({range_total('llm_tool_calls_total', t, 'tool')})", "{{tool}}", instant=True)],
                "short"), 12, 8)
    return dashboard(
        "vigil-llm-agents", "Vigil / AI agents and tools",
        "GenAI agents (invoke_agent) and their tool calls (execute_tool), from usage events and OpenTelemetry GenAI metrics: runs, failures, durations.",
        ["llm", "genai", "agents"],
        [var_query("job", "Job", "label_values(llm_agent_requests_total, job)"),
         var_query("instance", "Instance", 'label_values(llm_agent_requests_total{job=~"$job"}, instance)'),
         var_query("agent", "Agent", 'label_values(llm_agent_requests_total{instance=~"$instance"}, agent)'),
         var_query("tool", "Tool", 'label_values(llm_tool_calls_total{instance=~"$instance"}, tool)')],
        L, refresh="1m", time_from="now-6h")


# ---------------------------------------------------------------------- api
def api():
    s = 'instance=~"$instance",job=~"$job"'
    req = f"rate(http_requests_total{{{s}}}[$__rate_interval])"
    err = f'rate(http_requests_total{{code=~"5..",{s}}}[$__rate_interval])'
    tmo = f'rate(http_requests_total{{code=~"408|504",{s}}}[$__rate_interval])'
    dur = f"rate(http_request_duration_seconds_bucket{{{s}}}[$__rate_interval])"
    slo = 'slo_service="api",job=~"$job"'
    L = Layout()
    L.row("Overview")
    L.add(panel("stat", "Throughput", "Requests per second, all selected services.",
                [(f"sum({req})", "requests/s")], "reqps"), 6, 4)
    L.add(panel("stat", "Errors", "Share of requests answered with a 5xx; the rule pack warns above 5%.",
                [(f"(sum({err}) or vector(0)) / sum({req})", "errors")], "percentunit", min=0,
                thresholds=[(0.05, "orange"), (0.1, "red")]), 6, 4)
    L.add(panel("stat", "p95 latency", "95th percentile of the request duration; the rule pack warns above 2 s.",
                [(f"histogram_quantile(0.95, sum by (le) ({dur}))", "p95")], "s", thresholds=[(2, "orange"), (5, "red")]), 6, 4)
    L.add(panel("stat", "Active sessions", "Open sessions (app_sessions_active), all selected instances.",
                [(f"sum(app_sessions_active{{{s}}})", "sessions")], "short"), 6, 4)
    L.row("Traffic and errors")
    L.add(panel("timeseries", "Throughput by status code", "Requests per second by service and HTTP status code.",
                [(f"sum by (job, code) ({req})", "{{job}} {{code}}")], "reqps", min=0), 12, 8)
    L.add(panel("timeseries", "Error and timeout ratio",
                "Share of requests answered with a 5xx, and with 408 or 504 (timeouts), per service; the rule pack warns above 5% and 1%.",
                [(f"(sum by (job) ({err}) or sum by (job) ({req}) * 0) / sum by (job) ({req})", "{{job}} 5xx"),
                 (f"(sum by (job) ({tmo}) or sum by (job) ({req}) * 0) / sum by (job) ({req})", "{{job}} timeouts")],
                "percentunit", min=0), 12, 8)
    L.row("Latency and sessions")
    L.add(panel("timeseries", "Latency percentiles", "p50, p95 and p99 of http_request_duration_seconds per service.",
                [(f"histogram_quantile({q}, sum by (job, le) ({dur}))", f"{{{{job}}}} p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
                "s", min=0), 12, 8)
    L.add(panel("timeseries", "Active sessions and limit", "Open sessions per instance against app_sessions_max; the rule pack warns above 85%.",
                [(f"sum by (job, instance) (app_sessions_active{{{s}}})", "{{instance}} active"),
                 (f"sum by (job, instance) (app_sessions_max{{{s}}})", "{{instance}} limit")], "short", min=0), 12, 8)
    L.row("SLOs (rules/slo.rules.yml)")
    L.add(panel("timeseries", "Error budget burn rate",
                "How fast each SLO spends its error budget (1 = exactly the budget over the 30-day window). "
                "The generated alerts page at 14.4 (1h and 5m) and 6 (6h and 30m).",
                [(f"slo:current_burn_rate:ratio{{{slo}}}", "{{job}} {{slo_name}}")], "short", min=0,
                thresholds=[(6, "orange"), (14.4, "red")]), 12, 8)
    L.add(panel("timeseries", "SLI error ratio (5m and 1h)", "Share of bad events (errors, slow requests) per SLO over 5 minutes and 1 hour.",
                [(f'slo:sli_error:ratio_rate5m{{{slo}}}', "{{job}} {{slo_name}} 5m"),
                 (f'slo:sli_error:ratio_rate1h{{{slo}}}', "{{job}} {{slo_name}} 1h")], "percentunit", min=0), 12, 8)
    L.add(panel("bargauge", "Error budget left (30 days)", "Share of each SLO's 30-day error budget not yet spent.",
                [target("A", f"slo:period_error_budget_remaining:ratio{{{slo}}}", "{{job}} {{slo_name}}", instant=True)],
                "percentunit", max=1, thresholds=[(0, "red"), (0.25, "orange"), (0.5, "green")]), 24, 6)
    L.row("Database")
    L.add(panel("timeseries", "Database query time (p50, p95)",
                "Duration of the services' database operations (OpenTelemetry db.client.operation.duration); the rule pack warns at p95 above 500 ms.",
                [(f"histogram_quantile({q}, sum by (job, le) (rate(db_client_operation_duration_seconds_bucket{{{s}}}[$__rate_interval])))",
                  f"{{{{job}}}} p{int(q * 100)}") for q in (0.5, 0.95)], "s", min=0), 12, 8)
    L.add(panel("timeseries", "Connection pool in use",
                "Connections in use as a share of each pool's maximum (db.client.connection.count / .max); the rule pack warns above 80%.",
                [(f'sum by (job, instance, db_client_connection_pool_name) (db_client_connection_count{{db_client_connection_state="used",{s}}})'
                  f" / sum by (job, instance, db_client_connection_pool_name) (db_client_connection_max{{{s}}})",
                  "{{instance}} {{db_client_connection_pool_name}}")], "percentunit", min=0, max=1), 12, 8)
    L.add(panel("timeseries", "Requests waiting for a connection", "Requests queued for a pool connection (db.client.connection.pending_requests).",
                [(f"sum by (job, instance, db_client_connection_pool_name) (db_client_connection_pending_requests{{{s}}})",
                  "{{instance}} {{db_client_connection_pool_name}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Database operations", "Database operations per second per service.",
                [(f"sum by (job) (rate(db_client_operation_duration_seconds_count{{{s}}}[$__rate_interval]))", "{{job}}")],
                "ops", min=0), 12, 8)
    return dashboard(
        "vigil-api", "Vigil / API services",
        "The platform's API services as they export themselves: throughput, errors and timeouts, latency percentiles, "
        "sessions, SLO burn (rules/slo.rules.yml), database query time and connection pools.",
        ["api", "slo"],
        [var_query("job", "Job", "label_values(http_requests_total, job)"),
         var_query("instance", "Instance", 'label_values(http_requests_total{job=~"$job"}, instance)')],
        L, refresh="30s", time_from="now-6h")


# ------------------------------------------------------------------- alerts
def alerts():
    s = 'instance=~"$instance"'
    L = Layout()
    L.row("Alerts")
    L.add(panel("stat", "Firing", "Alerts firing now (0 when none).",
                [(f'count(ALERTS{{alertstate="firing",{s}}}) or vector(0)', "firing")], "short", thresholds=[(1, "red")]), 6, 4)
    L.add(panel("stat", "Pending", "Alerts whose condition holds but whose `for` has not elapsed (0 when none).",
                [(f'count(ALERTS{{alertstate="pending",{s}}}) or vector(0)', "pending")], "short", thresholds=[(1, "orange")]), 6, 4)
    L.add(panel("stat", "Critical firing", "Firing alerts with severity critical (0 when none).",
                [(f'count(ALERTS{{alertstate="firing",severity="critical",{s}}}) or vector(0)', "critical")], "short", thresholds=[(1, "red")]), 6, 4)
    L.add(panel("stat", "Anomalies", "Series whose anomaly score is above 0.6 now (0 when none).",
                [(f"count(vigil_anomaly_score{{{s}}} > 0.6) or vector(0)", "anomalous")], "short", thresholds=[(1, "orange")]), 6, 4)
    L.add(panel("table", "Active alerts",
                f"{EVENT_ONLY} rows exist only while an alert is pending or firing. ALERTS series written by the collector's rule evaluator.",
                [target("A", f"ALERTS{{{s}}}", instant=True)], "short"), 24, 8)
    L.add(panel("timeseries", "Firing alerts by name and severity",
                f"{EVENT_ONLY} has data only for time ranges in which alerts fired.",
                [(f'count by (alertname, severity) (ALERTS{{alertstate="firing",{s}}})', "{{alertname}} {{severity}}")], "short", min=0), 12, 8)
    L.add(panel("timeseries", "Time since alerts became active",
                f"{EVENT_ONLY} ALERTS_FOR_STATE holds the activation time of each pending or firing alert (kept across restarts).",
                [(f"time() - ALERTS_FOR_STATE{{{s}}}", "{{alertname}} {{instance}}")], "s", min=0), 12, 8)
    L.row("Anomalies")
    L.add(panel("timeseries", "Anomaly score",
                f"{EVENT_ONLY} written once an anomaly rule is loaded and its isolation forest is trained (at least 100 points). "
                "Scores are in (0, 1]; around 0.5 is normal, near 1 is anomalous.",
                [(f"vigil_anomaly_score{{{s}}}", "__auto")], "short", min=0, max=1, thresholds=[(0.6, "orange"), (0.7, "red")]), 24, 8)
    L.add(panel("timeseries", "Anomalous series",
                f"{EVENT_ONLY} only series whose score crossed 0.6 in the range.",
                [(f"vigil_anomaly_score{{{s}}} > 0.6", "__auto")], "short", min=0, max=1), 24, 8)
    return dashboard(
        "vigil-alerts", "Vigil / Alerts and anomalies",
        "Alert state (ALERTS, ALERTS_FOR_STATE) and anomaly scores (vigil_anomaly_score) from the collector's rule evaluator.",
        ["alerts", "anomaly"],
        [var_query("instance", "Instance", "label_values(ALERTS, instance)",
                   f"{EVENT_ONLY} instances that have or had alerts; empty while nothing ever fired.")],
        L, refresh="30s", time_from="now-24h")


DASHBOARDS = {
    "host.json": host,
    "postgres.json": postgres,
    "redis.json": redis,
    "llm.json": llm,
    "agents.json": agents,
    "api.json": api,
    "alerts.json": alerts,
}


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
        path = HERE / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        elif not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("stale (run python3 dashboards/generate.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
