#!/usr/bin/env bash
# Benchmark of cachepot against plain cargo and peer caches (sccache, kache).
#
#   bench/run.sh [--workload DIR] [--cachepot PATH] [--sccache PATH]
#                [--kache PATH] [--out DIR] [--tools plain,cachepot,sccache,kache]
#                (opt-in remote tools: cachepot-garage, cachepot-garage-25ms,
#                cachepot-runner-25ms, cachepot-reapi, cachepot-reapi-25ms,
#                cachepot-exec)
#                [--scratch DIR] [--keep-scratch] [--cachepot-log FILTER]
#
# See bench/README.md for the phases and how to read the figures.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

usage() {
    cat <<EOF
Usage: bench/run.sh [options]

Options:
  --workload DIR    crate to build (default: ../shared/bench/workload-a from the repo root)
  --cachepot PATH   cachepot binary (default: target/release/cachepot; built if missing)
  --sccache PATH    sccache binary (default: /root/peers/sccache/bin/sccache, else PATH)
  --kache PATH      kache binary (default: /root/peers/kache/bin/kache, else PATH)
  --out DIR         results directory (default: bench/out/<timestamp>)
  --tools LIST      comma-separated list from plain,cachepot,cachepot-s3,sccache,kache
                    (default: those five) and the opt-in remote tools below.
                    cachepot-s3 is cachepot with the local tier off, through the
                    S3 server (s3s-fs) of scripts/services.sh on loopback.
                    Remote tools on Garage (scripts/services.sh), opt-in:
                      cachepot-garage       local tier off, straight to Garage
                      cachepot-garage-25ms  local tier off, through a proxy that
                                            adds 25 ms to every request
                      cachepot-runner-25ms  local tier on, through the 25 ms proxy,
                                            local cache emptied before each phase
                                            (a fresh CI runner; prefetch fills it)
                    Remote tools on BuildGrid's Action Cache and CAS (REAPI):
                      cachepot-reapi        local tier off, straight to BuildGrid
                      cachepot-reapi-25ms   local tier off, +25 ms per gRPC call
                      cachepot-exec         local tier off, misses executed on the
                                            executing BuildGrid (2 workers on this
                                            machine): function and per-action
                                            overhead, not speed
  --scratch DIR     where checkouts, CARGO_HOMEs, caches and target dirs go
                    (default: a fresh directory under \${TMPDIR:-/tmp}; must not exist or be empty)
  --keep-scratch    do not delete the scratch directory at the end
  --cachepot-log F  diagnostics: CACHEPOT_LOG filter for cachepot's daemon, e.g.
                    cachepot_daemon=debug to log each miss (slows it; not for figures)
  -h, --help        this help

A missing peer (sccache, kache) is skipped with a note. Any failed build stops
the run with a non-zero exit status and names its log.
EOF
}

die() {
    echo "run.sh: error: $*" >&2
    exit 1
}
note() { echo "== $*" >&2; }

# ---------------------------------------------------------------- arguments

WORKLOAD="$REPO_ROOT/../shared/bench/workload-a"
CACHEPOT_BIN=""
CACHEPOT_ORIG=""
SCCACHE_BIN=""
KACHE_BIN=""
OUT=""
TOOLS="plain,cachepot,cachepot-s3,sccache,kache"
SCRATCH=""
KEEP_SCRATCH=0
CACHEPOT_LOG_FILTER=""

while (($#)); do
    opt=$1
    val=""
    case $opt in
        --*=*)
            val=${opt#*=}
            opt=${opt%%=*}
            ;;
        --workload | --cachepot | --sccache | --kache | --out | --tools | --scratch | --cachepot-log)
            (($# >= 2)) || die "$opt needs a value"
            val=$2
            shift
            ;;
    esac
    case $opt in
        --workload) WORKLOAD=$val ;;
        --cachepot) CACHEPOT_BIN=$val ;;
        --sccache) SCCACHE_BIN=$val ;;
        --kache) KACHE_BIN=$val ;;
        --out) OUT=$val ;;
        --tools) TOOLS=$val ;;
        --scratch) SCRATCH=$val ;;
        --keep-scratch) KEEP_SCRATCH=1 ;;
        --cachepot-log) CACHEPOT_LOG_FILTER=$val ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument: $opt"
            ;;
    esac
    shift
done

want=()
IFS=, read -r -a requested <<<"$TOOLS"
for t in "${requested[@]}"; do
    case $t in
        plain | cachepot | cachepot-s3 | sccache | kache) want+=("$t") ;;
        cachepot-garage | cachepot-garage-25ms | cachepot-runner-25ms) want+=("$t") ;;
        cachepot-reapi | cachepot-reapi-25ms | cachepot-exec) want+=("$t") ;;
        "") ;;
        *) die "--tools: unknown tool '$t' (known: plain,cachepot,cachepot-s3,cachepot-garage,cachepot-garage-25ms,cachepot-runner-25ms,cachepot-reapi,cachepot-reapi-25ms,cachepot-exec,sccache,kache)" ;;
    esac
done
((${#want[@]})) || die "--tools selects nothing"
wants() {
    local t
    for t in "${want[@]}"; do [[ $t == "$1" ]] && return 0; done
    return 1
}
# The cachepot tools that store on Garage, in the order they run.
GARAGE_TOOLS=(cachepot-garage cachepot-garage-25ms cachepot-runner-25ms)
wants_garage() {
    local t
    for t in "${GARAGE_TOOLS[@]}"; do wants "$t" && return 0; done
    return 1
}
wants_proxy() { wants cachepot-garage-25ms || wants cachepot-runner-25ms; }
# The cachepot tools that store on BuildGrid's Action Cache and CAS (REAPI).
REAPI_TOOLS=(cachepot-reapi cachepot-reapi-25ms cachepot-exec)
wants_reapi() { wants cachepot-reapi || wants cachepot-reapi-25ms || wants cachepot-exec; }
# Every cachepot* tool is cachepot with some settings (see tool_env).
is_cachepot() { [[ $1 == cachepot || $1 == cachepot-* ]]; }

for cmd in cargo python3 awk date timeout du cp; do
    command -v "$cmd" >/dev/null || die "'$cmd' is needed but not found on PATH"
done

[[ -d $WORKLOAD ]] || die "workload directory not found: $WORKLOAD"
WORKLOAD=$(cd "$WORKLOAD" && pwd)
[[ -f $WORKLOAD/Cargo.toml ]] || die "no Cargo.toml in $WORKLOAD"
[[ -f $WORKLOAD/Cargo.lock ]] || die "no Cargo.lock in $WORKLOAD (the lock pins the workload; it is never updated)"

if [[ -z $OUT ]]; then
    OUT="$BENCH_DIR/out/$(date +%Y%m%d-%H%M%S)"
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/notes.txt"
add_note() {
    note "$*"
    echo "$*" >>"$OUT/notes.txt"
}

# ---------------------------------------------------------------- environment

# Nothing from the caller's environment may change what is measured: no
# wrapper, no target-dir redirection, no flags, no cache settings.
for v in $(compgen -e); do
    case $v in
        SCCACHE_* | CACHEPOT_* | KACHE_*) unset "$v" ;;
    esac
done
unset RUSTC_WRAPPER RUSTC_WORKSPACE_WRAPPER CARGO_BUILD_RUSTC_WRAPPER \
    CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER CARGO_TARGET_DIR CARGO_BUILD_TARGET_DIR \
    CARGO_INCREMENTAL CARGO_BUILD_INCREMENTAL RUSTFLAGS CARGO_ENCODED_RUSTFLAGS \
    CARGO_BUILD_RUSTFLAGS CARGO_PROFILE_DEV_INCREMENTAL CARGO_BUILD_JOBS CARGO_HOME

# ---------------------------------------------------------------- tools

resolve_peer() { # name explicit-path -> prints path or nothing
    local name=$1 explicit=$2
    if [[ -n $explicit ]]; then
        [[ -x $explicit ]] || die "--$name: not an executable: $explicit"
        echo "$explicit"
    elif [[ -x /root/peers/$name/bin/$name ]]; then
        echo "/root/peers/$name/bin/$name"
    elif command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    fi
}

active=()
if wants plain; then active+=(plain); fi

if wants cachepot || wants cachepot-s3 || wants_garage || wants_reapi; then
    if [[ -n $CACHEPOT_BIN ]]; then
        [[ -x $CACHEPOT_BIN ]] || die "--cachepot: not an executable: $CACHEPOT_BIN"
    else
        CACHEPOT_BIN="$REPO_ROOT/target/release/cachepot"
        if [[ ! -x $CACHEPOT_BIN ]]; then
            note "building cachepot (cargo build --release -p cachepot), log: $OUT/cachepot-build.log"
            (cd "$REPO_ROOT" && cargo build --release -p cachepot) >"$OUT/cachepot-build.log" 2>&1 ||
                die "building cachepot failed; see $OUT/cachepot-build.log"
            [[ -x $CACHEPOT_BIN ]] || die "cargo build did not produce $CACHEPOT_BIN"
        fi
    fi
    CACHEPOT_BIN=$(cd "$(dirname "$CACHEPOT_BIN")" && pwd)/$(basename "$CACHEPOT_BIN")
    CACHEPOT_ORIG=$CACHEPOT_BIN
    if wants cachepot; then active+=(cachepot); fi
fi

# The loopback storage servers of scripts/services.sh. `start` stops and
# restarts all of them (and empties their data), which would break tests
# running against them: it runs only when a server needed here does not
# answer; Garage alone is started with `services.sh garage`.
S3_ENV=()
service_var() { # NAME -> value from `services.sh env`
    local v
    for v in "${S3_ENV[@]}"; do
        [[ $v == "$1="* ]] && { echo "${v#*=}"; return 0; }
    done
    die "scripts/services.sh env does not print $1"
}
answers() { # URL like http://127.0.0.1:PORT -> true when its port accepts a TCP connection
    local hp=${1#*://}
    hp=${hp%%/*}
    (exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}") 2>/dev/null
}
if wants cachepot-s3 || wants_garage || wants_reapi; then
    while IFS= read -r line; do S3_ENV+=("$line"); done < <(bash "$REPO_ROOT/scripts/services.sh" env | tr -d "\"'")
    if wants cachepot-s3 && ! answers "$(service_var CACHEPOT_TEST_S3)"; then
        note "starting the loopback storage servers (scripts/services.sh start)"
        bash "$REPO_ROOT/scripts/services.sh" start >"$OUT/services.log" 2>&1 ||
            die "scripts/services.sh start failed; see $OUT/services.log"
    fi
    if wants_reapi && ! answers "$(service_var CACHEPOT_TEST_REAPI)"; then
        note "starting the loopback storage servers (scripts/services.sh start)"
        bash "$REPO_ROOT/scripts/services.sh" start >"$OUT/services.log" 2>&1 ||
            die "scripts/services.sh start failed; see $OUT/services.log"
    fi
    if wants_garage && ! answers "$(service_var CACHEPOT_TEST_GARAGE)"; then
        note "starting Garage (scripts/services.sh garage)"
        bash "$REPO_ROOT/scripts/services.sh" garage >>"$OUT/services.log" 2>&1 ||
            die "scripts/services.sh garage failed; see $OUT/services.log"
    fi
fi
if wants cachepot-s3; then active+=(cachepot-s3); fi
for t in "${GARAGE_TOOLS[@]}" "${REAPI_TOOLS[@]}"; do
    if wants "$t"; then active+=("$t"); fi
done
if wants sccache; then
    SCCACHE_BIN=$(resolve_peer sccache "$SCCACHE_BIN")
    if [[ -n $SCCACHE_BIN ]]; then active+=(sccache); else add_note "sccache not found: skipped"; fi
fi
if wants kache; then
    KACHE_BIN=$(resolve_peer kache "$KACHE_BIN")
    if [[ -n $KACHE_BIN ]]; then active+=(kache); else add_note "kache not found: skipped"; fi
fi

# ---------------------------------------------------------------- scratch

if [[ -z $SCRATCH ]]; then
    SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/cachepot-bench.XXXXXX")
else
    mkdir -p "$SCRATCH"
    [[ -z $(ls -A "$SCRATCH") ]] || die "--scratch $SCRATCH is not empty"
    SCRATCH=$(cd "$SCRATCH" && pwd)
fi
# A private copy of cachepot: a rebuild of target/release during the run
# must not change the binary being measured.
if [[ -n $CACHEPOT_BIN ]]; then
    mkdir -p "$SCRATCH/bin"
    cp "$CACHEPOT_BIN" "$SCRATCH/bin/cachepot"
    CACHEPOT_BIN="$SCRATCH/bin/cachepot"
fi
name=$(basename "$WORKLOAD")
CHECKOUT_A="$SCRATCH/a/$name"
CHECKOUT_B="$SCRATCH/b/elsewhere/$name"
HOME_A="$SCRATCH/a/cargo-home"
HOME_B="$SCRATCH/b/cargo-home"
RESULTS="$OUT/results.tsv"
printf 'tool\tphase\tmetric\tvalue\n' >"$RESULTS"

record() { # tool phase metric value
    printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# ---------------------------------------------------------------- per-tool settings

SCCACHE_PORT=""
BUILD_T0=0
pick_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((4300 + RANDOM % 1000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    die "no free port found"
}

tool_dir() { echo "$SCRATCH/tools/$1"; }

# tool_env TOOL CARGO_HOME: sets TENV, the environment of builds and of the
# tool's control commands (they must match: it selects the daemon).
tool_env() {
    local tool=$1 home=$2 d
    d=$(tool_dir "$tool")
    TENV=("CARGO_HOME=$home")
    case $tool in
        plain) ;;
        cachepot*)
            [[ -n $CACHEPOT_BIN ]] || die "$tool: no cachepot binary"
            TENV+=("RUSTC_WRAPPER=$CACHEPOT_BIN"
                "CACHEPOT_DIR=$d/cache"
                "CACHEPOT_RUNTIME_DIR=$d/runtime"
                "CACHEPOT_CONF=$d/no-config.toml"
                "CACHEPOT_IDLE_TIMEOUT=1800")
            if [[ -n $CACHEPOT_LOG_FILTER ]]; then TENV+=("CACHEPOT_LOG=$CACHEPOT_LOG_FILTER"); fi
            if [[ $tool == cachepot-s3 ]]; then
                local v key secret endpoint
                for v in "${S3_ENV[@]}"; do
                    case $v in
                        CACHEPOT_TEST_S3=*) endpoint=${v#*=} ;;
                        CACHEPOT_TEST_S3_KEY=*) key=${v#*=} ;;
                        CACHEPOT_TEST_S3_SECRET=*) secret=${v#*=} ;;
                    esac
                done
                TENV+=("CACHEPOT_LOCAL=off" "CACHEPOT_BUCKET=cachepot-test"
                    "CACHEPOT_ENDPOINT=$endpoint" "CACHEPOT_S3_KEY_PREFIX=bench-$$"
                    "AWS_ACCESS_KEY_ID=$key" "AWS_SECRET_ACCESS_KEY=$secret")
            fi
            case $tool in
                cachepot-garage | cachepot-garage-25ms | cachepot-runner-25ms)
                    local garage=$GARAGE_ENDPOINT
                    [[ $tool == *-25ms ]] && garage="http://127.0.0.1:$PROXY_PORT"
                    # cachepot-runner-25ms keeps the local tier (emptied
                    # before each phase by cache_phase).
                    [[ $tool == cachepot-runner-25ms ]] || TENV+=("CACHEPOT_LOCAL=off")
                    TENV+=("CACHEPOT_BUCKET=$GARAGE_BUCKET" "CACHEPOT_ENDPOINT=$garage"
                        "CACHEPOT_REGION=$GARAGE_REGION" "CACHEPOT_S3_KEY_PREFIX=bench-$$-$tool"
                        "AWS_ACCESS_KEY_ID=$GARAGE_KEY" "AWS_SECRET_ACCESS_KEY=$GARAGE_SECRET")
                    ;;
                cachepot-reapi | cachepot-reapi-25ms)
                    local reapi=$REAPI_ENDPOINT
                    [[ $tool == *-25ms ]] && reapi="grpc://127.0.0.1:$REAPI_PROXY_PORT"
                    TENV+=("CACHEPOT_LOCAL=off" "CACHEPOT_REAPI_ENDPOINT=$reapi"
                        "CACHEPOT_REAPI_INSTANCE=cachepot" "CACHEPOT_REAPI_KEY_PREFIX=bench-$$-$tool")
                    ;;
                cachepot-exec)
                    # Misses run on the executing BuildGrid, which stores too.
                    TENV+=("CACHEPOT_LOCAL=off" "CACHEPOT_REAPI_ENDPOINT=$REAPI_EXEC_ENDPOINT"
                        "CACHEPOT_REAPI_EXECUTE=1" "CACHEPOT_REAPI_KEY_PREFIX=bench-$$-$tool")
                    ;;
            esac
            ;;
        sccache)
            TENV+=("RUSTC_WRAPPER=$SCCACHE_BIN"
                "SCCACHE_DIR=$d/cache"
                "SCCACHE_SERVER_PORT=$SCCACHE_PORT"
                "SCCACHE_CONF=$d/no-config.toml"
                "SCCACHE_IDLE_TIMEOUT=1800"
                "SCCACHE_ERROR_LOG=$OUT/sccache-server.log")
            ;;
        kache)
            # KACHE_CACHE_DIR, KACHE_RUNTIME_DIR and KACHE_CONFIG are read by
            # kache 2.0 (`kache daemon status` shows the paths in use); the
            # XDG_* variables keep its log and probe cache out of the home dir.
            # KACHE_SEED_NEW_TARGETS=0: no target-dir seeding, so warm
            # builds measure per-unit cache hits like the other tools.
            TENV+=("RUSTC_WRAPPER=$KACHE_BIN"
                "KACHE_CACHE_DIR=$d/cache"
                "KACHE_RUNTIME_DIR=$d/runtime"
                "KACHE_CONFIG=$d/no-config.toml"
                "XDG_CONFIG_HOME=$d/xdg/config"
                "XDG_CACHE_HOME=$d/xdg/cache"
                "XDG_STATE_HOME=$d/xdg/state"
                "XDG_DATA_HOME=$d/xdg/data"
                "XDG_RUNTIME_DIR=$d/xdg/runtime"
                "KACHE_SEED_NEW_TARGETS=0")
            ;;
    esac
}

# tool_ctl TOOL CARGO_HOME stop|zero|stats: runs the tool's control command.
tool_ctl() {
    local tool=$1 home=$2 what=$3 args=()
    tool_env "$tool" "$home"
    case $tool:$what in
        plain:*) return 0 ;;
        cachepot*:stop | sccache:stop) args=(--stop-server) ;;
        cachepot*:zero | sccache:zero) args=(--zero-stats) ;;
        cachepot*:stats | sccache:stats) args=(--show-stats --stats-format json) ;;
        kache:stop) args=(daemon stop) ;;
        kache:zero)
            # kache has no reset: its statistics are a window of build
            # events. Leave a gap so the next phase's window (below) holds
            # only that phase's events.
            sleep 2
            return 0
            ;;
        kache:stats)
            # Events since the phase's build started (whole seconds, rounded up).
            local since
            since=$(awk -v a="$BUILD_T0" -v b="$(now)" 'BEGIN { s = b - a; printf "%d", (s == int(s)) ? s : int(s) + 1 }')
            args=(stats --json --full --since "${since}s")
            ;;
    esac
    local bin
    case $tool in
        cachepot*) bin=$CACHEPOT_BIN ;;
        sccache) bin=$SCCACHE_BIN ;;
        kache) bin=$KACHE_BIN ;;
    esac
    env "${TENV[@]}" timeout 600 "$bin" "${args[@]}"
}

STARTED_TOOLS=()
PROXY_PID=""
REAPI_PROXY_PID=""
cleanup() {
    local rc=$? t
    set +e
    for t in "${STARTED_TOOLS[@]}"; do
        tool_ctl "$t" "$HOME_A" stop >/dev/null 2>&1
        tool_ctl "$t" "$HOME_B" stop >/dev/null 2>&1
    done
    for t in "$PROXY_PID" "$REAPI_PROXY_PID"; do
        if [[ -n $t ]]; then
            kill -TERM "$t" 2>/dev/null
            wait "$t" 2>/dev/null
        fi
    done
    if ((KEEP_SCRATCH)); then
        note "scratch kept: $SCRATCH"
    else
        rm -rf "$SCRATCH"
    fi
    if ((rc != 0)); then
        echo "run.sh: FAILED (exit $rc); results so far in $OUT" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

# ---------------------------------------------------------------- remote storage

# Garage for the cachepot-garage* and cachepot-runner* tools; the -25ms ones
# reach it through bench/latency_proxy.py, which delays every chunk from
# cachepot to Garage by 25 ms (one extra round trip per request, as to a
# store in another zone) and passes the answers straight back.
GARAGE_ENDPOINT="" GARAGE_BUCKET=cachepot-test GARAGE_REGION="" GARAGE_KEY="" GARAGE_SECRET=""
PROXY_PORT=""
PROXY_INFO=""
PROXY_DELAY_MS=25
if wants_garage; then
    GARAGE_ENDPOINT=$(service_var CACHEPOT_TEST_GARAGE)
    GARAGE_REGION=$(service_var CACHEPOT_TEST_GARAGE_REGION)
    GARAGE_KEY=$(service_var CACHEPOT_TEST_GARAGE_KEY)
    GARAGE_SECRET=$(service_var CACHEPOT_TEST_GARAGE_SECRET)
fi
# start_proxy TARGET_HOST:PORT LOG: starts bench/latency_proxy.py on a free
# port, waits until it is ready; sets STARTED_PROXY_PORT and STARTED_PROXY_PID.
start_proxy() {
    local target=$1 log=$2
    STARTED_PROXY_PORT=$(pick_port)
    python3 "$BENCH_DIR/latency_proxy.py" --listen "127.0.0.1:$STARTED_PROXY_PORT" \
        --target "$target" --delay-ms "$PROXY_DELAY_MS" >"$log" 2>&1 &
    STARTED_PROXY_PID=$!
    for _ in $(seq 1 100); do
        grep -qx ready "$log" 2>/dev/null && break
        kill -0 "$STARTED_PROXY_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -qx ready "$log" 2>/dev/null || die "bench/latency_proxy.py did not start; see $log"
    note "latency proxy on 127.0.0.1:$STARTED_PROXY_PORT -> $target (+${PROXY_DELAY_MS} ms)"
}
if wants_proxy; then
    garage_hp=${GARAGE_ENDPOINT#*://}
    garage_hp=${garage_hp%%/*}
    start_proxy "$garage_hp" "$OUT/latency-proxy.log"
    PROXY_PORT=$STARTED_PROXY_PORT PROXY_PID=$STARTED_PROXY_PID
    PROXY_INFO="127.0.0.1:$PROXY_PORT -> $garage_hp, +${PROXY_DELAY_MS} ms on every chunk to Garage (pid $PROXY_PID)"
fi

# BuildGrid (REAPI Action Cache and CAS) for the cachepot-reapi tools; the
# -25ms one through a latency proxy of its own (every gRPC call from
# cachepot is delayed by 25 ms).
REAPI_ENDPOINT=""
REAPI_EXEC_ENDPOINT=""
REAPI_PROXY_PORT=""
if wants_reapi; then
    REAPI_ENDPOINT=$(service_var CACHEPOT_TEST_REAPI)
    REAPI_EXEC_ENDPOINT=$(service_var CACHEPOT_TEST_REAPI_EXEC)
fi
if wants cachepot-reapi-25ms; then
    start_proxy "${REAPI_ENDPOINT#*://}" "$OUT/latency-proxy-reapi.log"
    REAPI_PROXY_PORT=$STARTED_PROXY_PORT REAPI_PROXY_PID=$STARTED_PROXY_PID
fi

# ---------------------------------------------------------------- builds

# run_build LABEL DIR TOOL CARGO_HOME: times `cargo build` in DIR; sets SECONDS_TAKEN.
run_build() {
    local label=$1 dir=$2 tool=$3 home=$4
    local log="$OUT/build-$label.log" t0 t1 rc=0
    tool_env "$tool" "$home"
    {
        echo "# $label: cargo build --locked --offline in $dir"
        printf '# env: %s\n' "${TENV[*]}"
        echo "# started: $(date -Is)"
    } >"$log"
    note "$label: building ($log)"
    t0=$(now)
    BUILD_T0=$t0
    (cd "$dir" && env "${TENV[@]}" cargo build --locked --offline) >>"$log" 2>&1 || rc=$?
    t1=$(now)
    if ((rc != 0)); then
        echo "run.sh: BUILD FAILED: $label (exit $rc); log: $log" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
    SECONDS_TAKEN=$(elapsed "$t0" "$t1")
    echo "# finished in ${SECONDS_TAKEN}s" >>"$log"
    note "$label: ${SECONDS_TAKEN}s"
}

size_mb() { if [[ -d $1 ]]; then du -sk "$1" | awk '{ printf "%.1f", $1 / 1024 }'; else echo 0; fi; }
compiled_units() { grep -c '^ *Compiling ' "$1" || true; }

# ---------------------------------------------------------------- setup

{
    echo "date: $(date -Is)"
    echo "host: $(uname -srm), $(nproc) cores"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "cargo: $(cargo --version)"
    echo "rustc: $(rustc --version)"
    echo "workload: $WORKLOAD"
    echo "scratch: $SCRATCH"
    echo "checkout A: $CHECKOUT_A (CARGO_HOME $HOME_A)"
    echo "checkout B: $CHECKOUT_B (CARGO_HOME $HOME_B)"
    echo "tools: ${active[*]}"
    if [[ -n $CACHEPOT_BIN ]]; then
        echo "cachepot: $CACHEPOT_ORIG, run from a copy ($("$CACHEPOT_BIN" --version 2>&1 || true)," \
            "built $(date -r "$CACHEPOT_ORIG" -Is))"
        echo "cachepot repo: $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no commit')" \
            "$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(dirty tree)')"
    fi
    if [[ -n $SCCACHE_BIN ]]; then
        echo "sccache: $SCCACHE_BIN ($("$SCCACHE_BIN" --version 2>&1 || true))"
    fi
    if [[ -n $KACHE_BIN ]]; then
        echo "kache: $KACHE_BIN ($("$KACHE_BIN" --version 2>&1 || true))"
    fi
    if [[ -n $GARAGE_ENDPOINT ]]; then
        echo "garage: $GARAGE_ENDPOINT, bucket $GARAGE_BUCKET, prefixes bench-$$-<tool>"
    fi
    if [[ -n $PROXY_INFO ]]; then
        echo "latency proxy: $PROXY_INFO"
    fi
} >"$OUT/env.txt"

note "scratch: $SCRATCH"
note "results: $OUT"

copy_checkout() { # dest
    mkdir -p "$(dirname "$1")"
    cp -a "$WORKLOAD" "$1"
    rm -rf "$1/target"
    chmod -R u+w "$1"
}
copy_checkout "$CHECKOUT_A"
copy_checkout "$CHECKOUT_B"

# Downloads happen here, once, and are never timed.
note "fetching dependencies into $HOME_A ($OUT/fetch.log)"
(cd "$CHECKOUT_A" && CARGO_HOME=$HOME_A cargo fetch --locked) >"$OUT/fetch.log" 2>&1 ||
    die "cargo fetch failed; see $OUT/fetch.log"
cmp -s "$WORKLOAD/Cargo.lock" "$CHECKOUT_A/Cargo.lock" || die "cargo fetch changed Cargo.lock"
cp -a "$HOME_A" "$HOME_B"

# ---------------------------------------------------------------- phases

if wants plain; then
    rm -rf "$CHECKOUT_A/target"
    run_build plain-cold "$CHECKOUT_A" plain "$HOME_A"
    record plain cold seconds "$SECONDS_TAKEN"
    record plain cold compiled_units "$(compiled_units "$OUT/build-plain-cold.log")"

    run_build plain-noop "$CHECKOUT_A" plain "$HOME_A"
    record plain noop seconds "$SECONDS_TAKEN"
    record plain noop compiled_units "$(compiled_units "$OUT/build-plain-noop.log")"

    # Three copies, the median counts: one copy swings from 0.3 s to 0.8 s
    # on this kind of machine.
    copy_dest="$SCRATCH/copy-of-target"
    copy_runs=()
    for _ in 1 2 3; do
        rm -rf "$copy_dest"
        t0=$(now)
        cp -a "$CHECKOUT_A/target" "$copy_dest"
        t1=$(now)
        copy_runs+=("$(elapsed "$t0" "$t1")")
    done
    copy_s=$(printf '%s\n' "${copy_runs[@]}" | sort -n | sed -n 2p)
    record plain copy seconds "$copy_s"
    record plain copy target_mb "$(size_mb "$copy_dest")"
    note "plain-copy: ${copy_s}s (median of ${copy_runs[*]}) for $(size_mb "$copy_dest") MB"
    rm -rf "$copy_dest"
fi

# cache_phase TOOL PHASE DIR CARGO_HOME
cache_phase() {
    local tool=$1 phase=$2 dir=$3 home=$4 label="$1-$2" ctl="$OUT/ctl-$1.log" t0 t1 rc=0
    rm -rf "$dir/target"
    # Zero the statistics, then stop the daemon, so the build below starts it
    # (as on a fresh CI runner) and counts from zero.
    {
        echo "## before $label: zero + stop"
        tool_ctl "$tool" "$home" zero || echo "(zero: exit $?)"
        tool_ctl "$tool" "$home" stop || echo "(stop: exit $?)"
    } >>"$ctl" 2>&1
    if [[ $tool == cachepot-runner-25ms ]]; then
        # A fresh CI runner: an empty local tier, the remote as the last
        # build left it.
        rm -rf "$(tool_dir "$tool")/cache"
    fi
    run_build "$label" "$dir" "$tool" "$home"
    local proxy=$PROXY_PID proxy_log=$OUT/latency-proxy.log
    if [[ $tool == cachepot-reapi-* ]]; then
        proxy=$REAPI_PROXY_PID proxy_log=$OUT/latency-proxy-reapi.log
    fi
    if [[ $tool == *-25ms ]] && ! kill -0 "$proxy" 2>/dev/null; then
        # Without the proxy the build reached no remote: its figures mean nothing.
        die "$label: the latency proxy has exited; see $proxy_log"
    fi
    record "$tool" "$phase" seconds "$SECONDS_TAKEN"
    record "$tool" "$phase" compiled_units "$(compiled_units "$OUT/build-$label.log")"
    if ! tool_ctl "$tool" "$home" stats >"$OUT/$label.stats.json" 2>>"$ctl"; then
        add_note "$label: could not read $tool statistics (see $ctl)"
    fi
    # Stopping waits for the daemon's pending writes: timed apart.
    echo "## after $label: stop" >>"$ctl"
    t0=$(now)
    tool_ctl "$tool" "$home" stop >>"$ctl" 2>&1 || rc=$?
    t1=$(now)
    ((rc == 0)) || add_note "$label: '$tool stop' exited $rc (see $ctl)"
    record "$tool" "$phase" stop_seconds "$(elapsed "$t0" "$t1")"
    if is_cachepot "$tool"; then
        # Each daemon start rewrites its log: keep one per phase.
        cat "$(tool_dir "$tool")"/runtime/*.log >"$OUT/$tool-daemon-$phase.log" 2>/dev/null || true
    fi
    record "$tool" "$phase" cache_mb "$(size_mb "$(tool_dir "$tool")/cache")"
}

for tool in "${active[@]}"; do
    [[ $tool == plain ]] && continue
    d=$(tool_dir "$tool")
    rm -rf "$d"
    mkdir -p "$d"
    [[ $tool == sccache ]] && SCCACHE_PORT=$(pick_port)
    STARTED_TOOLS+=("$tool")
    {
        echo "## $tool: $(date -Is)"
        tool_ctl "$tool" "$HOME_A" stop || true
    } >>"$OUT/ctl-$tool.log" 2>&1
    rm -rf "$d/cache"
    cache_phase "$tool" cold "$CHECKOUT_A" "$HOME_A"
    cache_phase "$tool" warm "$CHECKOUT_A" "$HOME_A"
    cache_phase "$tool" other "$CHECKOUT_B" "$HOME_B"
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

# ---------------------------------------------------------------- report

python3 "$BENCH_DIR/report.py" "$OUT"
note "summary: $OUT/summary.md; raw numbers: $RESULTS"
