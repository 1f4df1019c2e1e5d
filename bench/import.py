#!/usr/bin/env python3
"""partnerctl import-customers on a big file: wall time, partnerctl CPU, Redis CPU.

    bench/import.py [--customers N] [--batch N] [--runs R] [--reimport] [--commandstats]
                    [--cluster]

Starts a private redis-server (`--save '' --appendonly no`, a free loopback port, stopped
by pid at the end), loads org `bimp` (one program, no customers) with `partnerctl load`,
writes N customers (id, a 10-digit mobile, email, externalId: every identifier kind) to a
JSON Lines file in a temporary directory and times `partnerctl import-customers` into the
empty org (R runs, each on a flushed Redis reloaded with the org). --reimport also times a
second import of the same file (every customer unchanged: the read path alone). Prints per
run: wall seconds, partnerctl user+sys CPU (getrusage of the child), Redis CPU (INFO cpu
used_cpu_user + used_cpu_sys before and after), customers/s. Binary: $PARTNERCTL_BIN, by
default build/src/partnerctl.

--cluster: a Redis Cluster of 3 masters + 3 replicas instead (tests/integration/cluster.py,
stopped at the end), given to partnerctl with --redis-cluster; Redis CPU and commandstats
are summed over the masters (the replicas' CPU is not counted).
"""

import argparse
import json
import re
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORG = "bimp"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cli_all(ports, *args):
    return [cli(p, *args) for p in ports]


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port)] + list(args), capture_output=True,
                          text=True, check=True).stdout


def redis_cpu(ports):
    total = 0.0
    for port in ports:
        info = dict(l.split(":", 1) for l in cli(port, "INFO", "cpu").split() if ":" in l)
        total += float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return total


def commandstats(ports):
    """Redis's own time by command since the last CONFIG RESETSTAT: 'cmd calls usec'."""
    calls, usec = {}, {}
    for port in ports:
        for l in cli(port, "INFO", "commandstats").split():
            m = re.match(r"cmdstat_(\S+):calls=(\d+),usec=(\d+)", l)
            if m:
                calls[m.group(1)] = calls.get(m.group(1), 0) + int(m.group(2))
                usec[m.group(1)] = usec.get(m.group(1), 0) + int(m.group(3))
    rows = [(u, n, calls[n]) for n, u in usec.items()]
    return "  redis usec by command: " + ", ".join(
        "%s %d calls %.2f s" % (n, c, u / 1e6) for u, n, c in sorted(rows, reverse=True))


def run_import(ctl, target, path, batch):
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    argv = [ctl] + target + ["import-customers", "--org", ORG]
    if batch:
        argv += ["--batch", str(batch)]
    p = subprocess.run(argv + [path], capture_output=True, text=True)
    wall = time.monotonic() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.stderr.write(p.stderr)
        raise SystemExit("import failed: exit %d" % p.returncode)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return wall, cpu, p.stdout.strip(), ru1.ru_maxrss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=200000)
    ap.add_argument("--batch", type=int, default=0, help="--batch given to partnerctl "
                    "(default: partnerctl's own default)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--reimport", action="store_true")
    ap.add_argument("--commandstats", action="store_true",
                    help="print Redis's usec by command of each first import")
    ap.add_argument("--cluster", action="store_true",
                    help="a Redis Cluster of 3 masters + 3 replicas instead of one Redis")
    a = ap.parse_args()
    ctl = os.environ.get("PARTNERCTL_BIN", os.path.join(TOP, "build", "src", "partnerctl"))
    tmp = tempfile.mkdtemp(prefix="bench-import-")
    srv = clu = None
    if a.cluster:
        sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
        import cluster as clusterlib
        clu = clusterlib.Cluster().start()
        ports = [m["port"] for m in clu.masters()]
        target = ["--redis-cluster", clu.seeds]
    else:
        port = free_port()
        ports = [port]
        target = ["--redis", "redis://127.0.0.1:%d" % port]
        srv = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no", "--dir", tmp],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                cli_all(ports, "PING")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.05)
        org = {"orgs": [{"id": ORG, "defaultCountryCode": "91", "nationalNumberLength": 10,
                         "credentials": [], "customers": [],
                         "programs": [{"name": "P", "type": "EXTERNAL", "tiers": []}]}]}
        orgfile = os.path.join(tmp, "org.json")
        with open(orgfile, "w") as f:
            json.dump(org, f)
        path = os.path.join(tmp, "customers.jsonl")
        with open(path, "w") as f:
            for cid in range(1, a.customers + 1):
                f.write('{"id":%d,"mobile":"9%09d","email":"c%d@bench.example",'
                        '"externalId":"EXT-%d"}\n' % (cid, cid, cid, cid))
        print("%d customers, %.1f MB file; partnerctl %s; %s" %
              (a.customers, os.path.getsize(path) / 1e6, ctl,
               "a cluster of %d masters" % len(ports) if a.cluster else "one Redis"))
        for r in range(a.runs):
            cli_all(ports, "FLUSHALL")
            subprocess.run([ctl] + target + ["load", orgfile], check=True, capture_output=True)
            cli_all(ports, "CONFIG", "RESETSTAT")
            c0 = redis_cpu(ports)
            wall, cpu, out, rss = run_import(ctl, target, path, a.batch)
            rcpu = redis_cpu(ports) - c0
            if a.commandstats:
                print(commandstats(ports))
            print("run %d: import %.2f s wall, partnerctl CPU %.2f s, Redis CPU %.2f s, "
                  "%.0f customers/s; largest RSS of a finished child (redis-cli, load, "
                  "import) %.1f MB" %
                  (r + 1, wall, cpu, rcpu, a.customers / wall, rss / 1024))
            if a.reimport:
                c0 = redis_cpu(ports)
                wall, cpu, out, rss = run_import(ctl, target, path, a.batch)
                rcpu = redis_cpu(ports) - c0
                print("run %d: reimport (all unchanged) %.2f s wall, partnerctl CPU %.2f s, "
                      "Redis CPU %.2f s" % (r + 1, wall, cpu, rcpu))
        print("last summary: " + out)
    finally:
        if srv is not None:
            srv.terminate()
            srv.wait()
        if clu is not None:
            clu.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
