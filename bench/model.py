#!/usr/bin/env python3
"""What N remote workers would give a workload: a model from measurements.

    python3 bench/model.py --timings DIR/cargo-timing.html --workload DIR \
        --overhead-ms 400 [--cores 2] [--speed 1.0]

Reads the units of a plain cold `cargo build --timings` (their start,
duration, the time their metadata was ready, and which units each one
unblocked) and `cargo metadata` of the workload (which packages are
proc-macros). Units that cachepot sends to the engine are library compiles
(`lib`/`rlib`); everything else (binaries, proc-macros, build scripts and
their runs) stays on the machine's cores.

For N workers it prints the critical path and the build time bound:

  remote unit:  duration * speed + overhead   (and its dependents wait for
                the whole unit: the rmeta arrives with the rlib)
  local unit:   duration; its dependents may start at its rmeta, as today
  T(N) >= max(critical path, remote work / N, local work / cores)

`--overhead-ms` is the measured cost of a remote action beyond the compile
(bench/run.sh's `overhead ms/action` for cachepot-exec). The durations come
from the machine that ran the timings, with as many jobs as it has cores:
they include that machine's contention, which makes the model cautious.
"""

import argparse
import json
import re
import subprocess


def load_units(path):
    text = open(path).read()
    m = re.search(r"const UNIT_DATA = (\[.*?\]);\n", text, re.S)
    if not m:
        raise SystemExit(f"{path}: no UNIT_DATA (is it cargo's timings report?)")
    return json.loads(m.group(1))


def proc_macro_packages(workload):
    meta = json.loads(subprocess.run(
        ["cargo", "metadata", "--format-version", "1"],
        cwd=workload, check=True, capture_output=True, text=True).stdout)
    return {p["name"] for p in meta["packages"]
            if any("proc-macro" in t["kind"] for t in p["targets"])}


def is_remote(unit, proc_macros):
    """A library compile of a package that is not a proc-macro."""
    return (unit["mode"] == "todo" and unit["target"].strip() == ""
            and unit["name"] not in proc_macros)


def rmeta_at(unit):
    """Seconds after its start at which a unit's metadata was ready."""
    for name, span in unit.get("sections") or []:
        if name == "frontend":
            return span["end"]
    return unit["duration"]


def critical_path(units, proc_macros, overhead, speed, remote=True):
    by_index = {u["i"]: u for u in units}
    # Who unblocks whom, and whether at the rmeta or at the end.
    waits = {u["i"]: [] for u in units}
    for u in units:
        for j in u.get("unblocked_units", []):
            waits[j].append((u["i"], False))
        for j in u.get("unblocked_rmeta_units", []):
            waits[j].append((u["i"], True))
    end, meta = {}, {}

    def finish(i):
        if i in end:
            return end[i]
        u = by_index[i]
        ready = max((meta[d] if at_rmeta else end[d]
                     for d, at_rmeta in waits[i] if finish(d) is not None), default=0.0)
        if remote and is_remote(u, proc_macros):
            cost = u["duration"] * speed + overhead
            end[i] = ready + cost
            meta[i] = end[i]
        else:
            end[i] = ready + u["duration"]
            meta[i] = ready + rmeta_at(u)
        return end[i]

    for u in sorted(units, key=lambda u: u["start"]):
        finish(u["i"])
    return max(end.values(), default=0.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timings", required=True, help="cargo-timing.html of a plain cold build")
    ap.add_argument("--workload", required=True, help="the workload's directory (for cargo metadata)")
    ap.add_argument("--overhead-ms", type=float, required=True, help="measured overhead per remote action")
    ap.add_argument("--cores", type=int, default=2, help="this machine's cores (local units)")
    ap.add_argument("--speed", type=float, default=1.0, help="worker compile time / local compile time")
    args = ap.parse_args()
    units = load_units(args.timings)
    pm = proc_macro_packages(args.workload)
    o = args.overhead_ms / 1000
    remote = [u for u in units if is_remote(u, pm)]
    local = [u for u in units if not is_remote(u, pm)]
    remote_work = sum(u["duration"] * args.speed + o for u in remote)
    local_work = sum(u["duration"] for u in local)
    wall = max((u["start"] + u["duration"] for u in units), default=0.0)
    cp_local = critical_path(units, pm, 0.0, 1.0, remote=False)
    cp = critical_path(units, pm, o, args.speed)
    print(f"units: {len(units)} ({len(remote)} library compiles to the engine, {len(local)} here)")
    print(f"measured plain cold build: {wall:.1f} s; its work {sum(u['duration'] for u in units):.1f} s")
    print(f"work sent: {remote_work:.1f} s (with {args.overhead_ms:.0f} ms per action); kept here: {local_work:.1f} s")
    print(f"critical path: {cp_local:.1f} s compiled here with pipelining, {cp:.1f} s with libraries remote")
    print()
    print("| workers | bound (s) | limited by | speed-up over the measured build |")
    print("|---:|---:|---|---:|")
    for n in (1, 2, 4, 8, 16, 32, 64):
        parts = {"critical path": cp, "remote work / N": remote_work / n,
                 "local work / cores": local_work / args.cores}
        what = max(parts, key=parts.get)
        bound = parts[what]
        print(f"| {n} | {bound:.1f} | {what} | {wall / bound:.2f}x |")


if __name__ == "__main__":
    main()
