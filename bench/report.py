#!/usr/bin/env python3
"""The summary of a bench/run.sh run: reads results.tsv, the statistics
files and notes.txt in the results directory given as the only argument,
prints the markdown tables and writes them to summary.md there."""
import json, os, sys

out = sys.argv[1]
rows = []
with open(os.path.join(out, "results.tsv")) as f:
    next(f)
    for line in f:
        t, p, m, v = line.rstrip("\n").split("\t")
        rows.append((t, p, m, v))
val = {}
for t, p, m, v in rows:
    try:
        val[(t, p, m)] = float(v)
    except ValueError:
        pass

def get(t, p, m="seconds"):
    return val.get((t, p, m))

def num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None

def total(x):
    """A count that may be a number or sccache's {"counts": {...}}."""
    if isinstance(x, dict):
        if "counts" in x:
            x = x["counts"]
        return sum(v for v in x.values() if isinstance(v, (int, float)))
    return num(x)

def c_family(by_lang, rust="rust"):
    """Sum of the counts of every language but Rust, or None without data."""
    if not isinstance(by_lang, dict):
        return None
    return sum(v for k, v in by_lang.items()
               if k.lower() != rust and isinstance(v, (int, float)))

def stats_of(tool, phase):
    path = os.path.join(out, f"{tool}-{phase}.stats.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None
    s = {"raw": raw}
    if tool == "sccache":
        st = raw.get("stats", raw)
        s["requests"] = num(st.get("compile_requests"))
        s["hits"] = total(st.get("cache_hits"))
        s["misses"] = total(st.get("cache_misses"))
        s["non_cacheable"] = (num(st.get("requests_not_cacheable")) or 0) + (
            num(st.get("non_cacheable_compilations")) or 0)
        s["errors"] = total(st.get("cache_errors"))
        s["failures"] = num(st.get("compile_fails"))
        s["reasons"] = st.get("not_cached") or {}
        # Per-language counts, e.g. {"Rust": n, "C/C++": n, "Assembler": n}.
        for k in ("hits", "misses"):
            x = st.get(f"cache_{k}")
            s[f"c_{k}"] = c_family(x.get("counts")) if isinstance(x, dict) else None
    elif tool.startswith("cachepot"):
        s["requests"] = num(raw.get("compile_requests"))
        s["hits"] = num(raw.get("cache_hits"))
        s["misses"] = num(raw.get("cache_misses"))
        s["non_cacheable"] = num(raw.get("non_cacheable"))
        s["errors"] = num(raw.get("cache_errors"))
        s["failures"] = num(raw.get("compile_failures"))
        s["reasons"] = raw.get("non_cacheable_reasons") or {}
        s["hit_median_us"] = num(raw.get("hit_time_median_us"))
        s["hit_p90_us"] = num(raw.get("hit_time_p90_us"))
        # Values copied into the local tier by build-level prefetch.
        s["prefetched"] = num(raw.get("prefetched"))
        # Build-script runs, counted apart from compiles.
        bs = raw.get("build_scripts") or {}
        s["script_hits"] = num(bs.get("hits"))
        s["script_misses"] = num(bs.get("misses"))
        # "languages": {"rust": {"hits": n, "misses": n, "non_cacheable": n}, "c": {...}, ...}
        langs = raw.get("languages")
        if isinstance(langs, dict):
            for k in ("hits", "misses"):
                s[f"c_{k}"] = c_family({l: c.get(k) for l, c in langs.items() if isinstance(c, dict)})
    else:
        # kache 2.0: `stats --json --full` has a "summary" (under "report"
        # with --last-build).
        rep = raw.get("report", raw)
        sm = rep.get("summary") or {}
        def pick(*names):
            vals = [num(sm.get(n)) for n in names if sm.get(n) is not None]
            return sum(vals) if vals else None
        s["requests"] = pick("total_crates")
        s["hits"] = pick("local_hits", "prefetch_hits", "remote_hits")
        s["misses"] = pick("misses")
        s["non_cacheable"] = pick("passthroughs", "skipped")
        s["errors"] = pick("errors", "store_failures")
        s["failures"] = None
        reasons = {}
        bp = rep.get("bypass") or {}
        for item in (bp.get("reasons") or []) if isinstance(bp, dict) else []:
            if isinstance(item, dict) and item.get("reason"):
                k = str(item["reason"])
                reasons[k] = reasons.get(k, 0) + (item.get("count") or 1)
        s["reasons"] = reasons
    return s

def fmt(x, nd=2):
    if x is None:
        return ""
    if abs(x - round(x)) < 1e-9 and nd == 0:
        return str(int(round(x)))
    return f"{x:.{nd}f}"

def ratio(a, b, nd=2):
    if a is None or not b:
        return "n/a"
    return f"{a / b:.{nd}f}"

phase_names = {
    "cold": "cold (empty cache, fresh target, checkout A)",
    "warm": "warm, same tree (fresh target, checkout A)",
    "other": "warm, other checkout (checkout B, own CARGO_HOME)",
    "noop": "no-op rebuild",
    "copy": "copy of finished target dir",
}
tools = []
for t, _, _, _ in rows:
    if t not in tools:
        tools.append(t)

plain_cold = get("plain", "cold")
# cachepot with remote storage, in the order they ran.
remote_what = {
    "cachepot-s3": "s3s-fs on loopback, local tier off",
    "cachepot-garage": "Garage on loopback, local tier off",
    "cachepot-garage-25ms": "Garage +25 ms per request, local tier off",
    "cachepot-runner-25ms": "Garage +25 ms per request, local tier emptied before each phase",
    "cachepot-reapi": "BuildGrid (REAPI Action Cache and CAS) on loopback, local tier off",
    "cachepot-reapi-25ms": "BuildGrid +25 ms per gRPC call, local tier off",
    "cachepot-exec": "executing BuildGrid (misses run there), local tier off",
}
remote = [t for t in tools if t.startswith("cachepot-")]
limit = None
if get("plain", "noop") is not None and get("plain", "copy") is not None:
    limit = get("plain", "noop") + get("plain", "copy")

# C-family (every language but Rust) columns, when some tool reported them.
with_c = any((stats_of(t, p) or {}).get("c_hits") is not None
             for t in tools for p in ("cold", "warm", "other"))

lines = []
w = lines.append
w("## Results")
w("")
w("| tool | phase | seconds | / plain cold | / (no-op + copy) | hits | misses | non-cacheable |"
  + (" C-family hits | C-family misses |" if with_c else "") + " stop s |")
w("|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if with_c else "") + "---:|")
for t in tools:
    for p in ["cold", "noop", "copy", "warm", "other"]:
        sec = get(t, p)
        if sec is None:
            continue
        name = phase_names[p]
        if p == "copy" and get(t, p, "target_mb") is not None:
            name += f" ({get(t, p, 'target_mb'):.0f} MB)"
        st = stats_of(t, p) if t != "plain" else None
        h = m = n = ch = cm = ""
        if st:
            h, m, n = fmt(st["hits"], 0), fmt(st["misses"], 0), fmt(st["non_cacheable"], 0)
            ch, cm = fmt(st.get("c_hits"), 0), fmt(st.get("c_misses"), 0)
        lim = ratio(sec, limit) if p in ("warm", "other") else ""
        cc = f" {ch} | {cm} |" if with_c else ""
        w(f"| {t} | {name} | {sec:.2f} | {ratio(sec, plain_cold)} | {lim} | {h} | {m} | {n} |{cc} {fmt(get(t, p, 'stop_seconds'))} |")
w("")

if "cachepot" in tools:
    w("## cachepot")
    w("")
    w("| figure | value |")
    w("|---|---|")
    c = {p: get("cachepot", p) for p in ("cold", "warm", "other")}
    if c["cold"] is not None and plain_cold:
        w(f"| cold overhead vs plain cold | {100 * (c['cold'] / plain_cold - 1):+.1f} % |")
    for peer in ("sccache", "kache"):
        for p, label in (("warm", "warm, same tree"), ("other", "warm, other checkout"), ("cold", "cold")):
            ps = get(peer, p)
            if ps is not None and c[p] is not None:
                w(f"| {label}: cachepot / {peer} | {ratio(c[p], ps)} |")
    # Remote storage: each remote tool's phase over cachepot's on local disk.
    for t in remote:
        for p, label in (("warm", "warm, same tree"), ("other", "warm, other checkout")):
            if get(t, p) is not None and c[p] is not None:
                w(f"| {label}: {t} / local disk | {ratio(get(t, p), c[p])} |")
    if limit is not None:
        for p, label in (("warm", "warm, same tree"), ("other", "warm, other checkout")):
            if c[p] is not None:
                w(f"| {label} / (no-op {get('plain', 'noop'):.2f} s + copy {get('plain', 'copy'):.2f} s) | {ratio(c[p], limit)} |")
    w("")
    w("| phase | requests | hits | misses | non-cacheable | errors | compile failures | hit median µs | hit p90 µs | build-script hits | build-script misses | cache MB |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    reasons = []
    for p in ("cold", "warm", "other"):
        st = stats_of("cachepot", p)
        if get("cachepot", p) is None:
            continue
        if not st:
            w(f"| {p} | (no stats) | | | | | | | | | | |")
            continue
        w("| " + " | ".join([p] + [fmt(st.get(k), 0) for k in
            ("requests", "hits", "misses", "non_cacheable", "errors", "failures", "hit_median_us", "hit_p90_us",
             "script_hits", "script_misses")]
            + [fmt(get("cachepot", p, "cache_mb"), 1)]) + " |")
        if st["reasons"]:
            reasons.append((p, st["reasons"]))
    w("")
    if reasons:
        w("Non-cacheable reasons (cachepot):")
        w("")
        for p, r in reasons:
            w(f"- {p}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.items())))
        w("")

if remote:
    w("Remote storage (`/ local disk`: the tool's phase over cachepot's same phase; "
      "`prefetched`: values build-level prefetch copied into the local tier):")
    w("")
    w("| tool | storage | phase | seconds | / local disk | hits | misses | errors | prefetched | hit median µs | stop s |")
    w("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in remote:
        for p in ("cold", "warm", "other"):
            sec = get(t, p)
            if sec is None:
                continue
            st = stats_of(t, p) or {}
            w("| " + " | ".join([t, remote_what.get(t, ""), p, f"{sec:.2f}", ratio(sec, get("cachepot", p))]
                + [fmt(st.get(k), 0) for k in ("hits", "misses", "errors", "prefetched", "hit_median_us")]
                + [fmt(get(t, p, "stop_seconds"))]) + " |")
    w("")

# Remote execution: what the engine ran and what each action cost beyond
# the compile itself (wall time around the action less the worker's
# execution time, per action).
execs = []
for t in remote:
    for p in ("cold", "warm", "other"):
        st = stats_of(t, p)
        raw = (st or {}).get("raw") or {}
        n, failed = num(raw.get("remote_executions")), num(raw.get("remote_execution_failures"))
        if not n and not failed:
            continue
        r = raw.get("remote_execution") or {}
        kept = sum((r.get("kept_local") or {}).values())
        over = (num(r.get("wall_ms")) - num(r.get("executing_ms"))) / n if n else None
        mb = lambda k: (num(r.get(k)) or 0) / 1048576
        execs.append("| " + " | ".join([t, p, f"{get(t, p):.2f}", ratio(get(t, p), plain_cold), fmt(n, 0), fmt(failed, 0),
            fmt(kept, 0), f"{mb('bytes_uploaded'):.1f}", f"{mb('bytes_downloaded'):.1f}",
            fmt((num(r.get('executing_ms')) or 0) / 1000, 1), fmt((num(r.get('queued_ms')) or 0) / 1000, 1),
            fmt(over, 0)]) + " |")
        fr = r.get("failure_reasons") or {}
        if fr:
            execs.append(f"| | {p}: failed: " + ", ".join(f"{k} ×{v}" for k, v in sorted(fr.items())) + " | | | | | | | | | | |")
if execs:
    w("Remote execution (`ran`: compiles the engine ran; `kept`: missed compiles that run here by design, "
      "linked crates; `overhead`: per action, wall time around it less the worker's execution time):")
    w("")
    w("| tool | phase | seconds | / plain cold | ran | failed | kept | MB up | MB down | executing s | queued s | overhead ms/action |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for line in execs:
        w(line)
    w("")

for t in tools:
    if t in ("plain", "cachepot"):
        continue
    rs = [(p, stats_of(t, p)) for p in ("cold", "warm", "other")]
    rs = [(p, s["reasons"]) for p, s in rs if s and s.get("reasons")]
    if rs:
        w(f"Not-cached reasons ({t}, as it reports them):")
        w("")
        for p, r in rs:
            w(f"- {p}: " + ", ".join(f"{k} ×{v}" for k, v in sorted(r.items())))
        w("")

notes = open(os.path.join(out, "notes.txt")).read().strip()
if notes:
    w("Notes:")
    w("")
    for n in notes.splitlines():
        w(f"- {n}")
    w("")
w("Seconds are wall time on a shared, noisy machine: compare the ratios, not the seconds.")
w("`stop s`: how long stopping the daemon took after the build (pending writes), not counted in `seconds`.")

text = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(text)
print(text)
