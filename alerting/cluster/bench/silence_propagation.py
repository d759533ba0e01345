#!/usr/bin/env python3
"""Silence propagation in a three-member cluster, Vigil against Alertmanager.

Starts three `vigil serve` members and then three Alertmanager 0.25 members
(Debian `prometheus-alertmanager`) on 127.0.0.1 with default gossip
settings, creates N silences on the first member of each and measures the
time until both other members return it from `/api/v2/silence/{id}`.

    cargo build -p vigil --bin vigil
    python3 alerting/cluster/bench/silence_propagation.py [--vigil target/debug/vigil] [-n 20]
"""
import argparse, datetime, json, os, shutil, statistics, subprocess, sys, tempfile, time
import urllib.request

AM_CONFIG = """route: {receiver: none}
receivers: [{name: none}]
"""


def get(url):
    return json.load(urllib.request.urlopen(url, timeout=5))


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=5))


def start(kind, exe, d, http, gossip):
    procs = []
    for i in range(3):
        peers = [f"127.0.0.1:{gossip + j}" for j in range(3) if j != i]
        data = os.path.join(d, f"{kind}{i}")
        if kind == "vigil":
            cmd = [exe, "serve", "--listen", f"127.0.0.1:{http + i}", "--data-dir", data,
                   "--alerting-config", os.path.join(d, "am.yml"),
                   "--cluster-listen", f"127.0.0.1:{gossip + i}"]
        else:
            cmd = [exe, "--config.file", os.path.join(d, "am.yml"), "--storage.path", data,
                   "--web.listen-address", f"127.0.0.1:{http + i}",
                   "--cluster.listen-address", f"127.0.0.1:{gossip + i}"]
        for p in peers:
            cmd.append(f"--cluster.peer={p}")
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def measure(http, n):
    deadline = time.monotonic() + 120
    while True:
        try:
            if all(get(f"http://127.0.0.1:{http + i}/api/v2/status")["cluster"]["status"] == "ready"
                   for i in range(3)):
                break
        except Exception:
            pass
        if time.monotonic() > deadline:
            sys.exit("cluster did not become ready")
        time.sleep(0.1)
    lat = []
    for k in range(n):
        now = datetime.datetime.now(datetime.timezone.utc)
        body = {"matchers": [{"name": "alertname", "value": f"M{k}", "isRegex": False, "isEqual": True}],
                "startsAt": now.isoformat().replace("+00:00", "Z"),
                "endsAt": (now + datetime.timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                "createdBy": "bench", "comment": "bench"}
        t0 = time.monotonic()
        sid = post(f"http://127.0.0.1:{http}/api/v2/silences", body)["silenceID"]
        seen = set()
        while len(seen) < 2:
            if time.monotonic() - t0 > 30:
                sys.exit(f"silence {sid} did not reach the peers in 30 s")
            for i in (1, 2):
                if i not in seen:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{http + i}/api/v2/silence/{sid}", timeout=5)
                        seen.add(i)
                    except Exception:
                        pass
            time.sleep(0.005)
        lat.append((time.monotonic() - t0) * 1000)
    lat.sort()
    return statistics.median(lat), lat[max(0, int(0.95 * len(lat)) - 1)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vigil", default="target/debug/vigil")
    ap.add_argument("--alertmanager", default=shutil.which("prometheus-alertmanager") or "alertmanager")
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--port", type=int, default=23900, help="first HTTP port; gossip uses +50")
    a = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "am.yml"), "w") as f:
            f.write(AM_CONFIG)
        for kind, exe in (("vigil", a.vigil), ("alertmanager", a.alertmanager)):
            procs = start(kind, exe, d, a.port, a.port + 50)
            try:
                results[kind] = measure(a.port, a.n)
            finally:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.wait(timeout=30)
    for kind, (med, p95) in results.items():
        print(f"{kind:13s} silence on both peers: median {med:6.0f} ms  p95 {p95:6.0f} ms  (n={a.n})")
    print(f"ratio vigil/alertmanager (median): {results['vigil'][0] / results['alertmanager'][0]:.2f}")


if __name__ == "__main__":
    main()
