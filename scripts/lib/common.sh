# shellcheck shell=bash
# Helpers shared by scripts/run, scripts/test and scripts/bench. Source it; do not execute it.
#
# PostgreSQL clusters: the server refuses to run as root, so when the scripts run as root the
# cluster runs as the `postgres` OS user. Its data directory stays under the repository's
# `.data/`; any parent directory the `postgres` (or nginx's `www-data`) user cannot traverse
# gets the search bit for others added (`chmod o+x`, e.g. /root 0700 -> 0711) — nothing else
# about those directories changes. `.data/` itself is 0711: traversable, not listable.

if [[ ${BASH_SOURCE[0]} == "${0}" ]]; then
    echo "scripts/lib/common.sh is sourced by scripts/run, scripts/test and scripts/bench" >&2
    exit 2
fi

REQUIRED_PACKAGES=(
    libfcgi-dev libcurl4-openssl-dev libpq-dev libssl-dev nginx-light postgresql spawn-fcgi wrk
    libfcgi-bin curl python3
    # The sign-in test drives a real browser.
    chromium chromium-driver python3-selenium
    # What holds behind a transaction-mode pooler (docs/operations.md, "pgbouncer").
    pgbouncer
    # The OpenAPI contract: the test's checker, and the venv scripts/test installs schemathesis in.
    python3-yaml python3-jsonschema python3-venv
)
SOCKET_GROUP=www-data

# The repository root (absolute, symlinks resolved).
repo_root() (
    cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P
)

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
    log "error: $*"
    exit 1
}

is_root() {
    [[ ${EUID} -eq 0 ]]
}

package_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Installs the apt packages the build, the tests and the scripts need; only the missing ones.
ensure_packages() {
    local missing=() package
    for package in "${REQUIRED_PACKAGES[@]}"; do
        # Any nginx flavour will do: installing nginx-light next to nginx-core would conflict.
        if [[ ${package} == nginx-light ]] && nginx_bin >/dev/null 2>&1; then
            continue
        fi
        package_installed "${package}" || missing+=("${package}")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    local install=(apt-get install -y --no-install-recommends "${missing[@]}")
    if ! is_root; then
        log "missing packages: ${missing[*]}"
        log "install them with: sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive ${install[*]}"
        exit 1
    fi
    log "installing: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive "${install[@]}"
}

nginx_bin() {
    if command -v nginx 2>/dev/null; then
        return 0
    fi
    if [[ -x /usr/sbin/nginx ]]; then
        echo /usr/sbin/nginx
        return 0
    fi
    return 1
}

random_base64() {
    head -c "$1" /dev/urandom | base64 -w0
}

random_hex() {
    head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'
}

# ensure_secrets FILE: creates FILE (mode 0600) once with the local secrets, adds any key that
# is missing, and loads them as shell variables (not exported: pass them on explicitly).
ensure_secrets() {
    local file=$1 key value
    mkdir -p "$(dirname "${file}")"
    if [[ ! -e ${file} ]]; then
        (umask 077 && : >"${file}")
        log "created ${file}"
    fi
    chmod 0600 "${file}"
    for key in CASEHUG_JWT_SECRET TOKEN_ENCRYPTION_KEY PG_SUPERUSER_PASSWORD APP_DB_PASSWORD \
        SANDBOX_CLIENT_SECRET SANDBOX_API_KEY SANDBOX_USER_PASSWORD SANDBOX_DB_PASSWORD WORKER_DB_PASSWORD \
        OPS_DB_PASSWORD; do
        if grep -q "^${key}=" "${file}"; then
            continue
        fi
        case ${key} in
            CASEHUG_JWT_SECRET) value=$(random_base64 48) ;;
            TOKEN_ENCRYPTION_KEY) value=$(random_base64 32) ;;
            *) value=$(random_hex 24) ;;
        esac
        printf '%s=%s\n' "${key}" "${value}" >>"${file}"
    done
    # shellcheck disable=SC1090
    source "${file}"
}

# The package.swift `routes` array, one name per line.
route_names() {
    local root
    root=$(repo_root)
    sed -n 's/^let routes = \[\(.*\)\]/\1/p' "${root}/Package.swift" | tr -d '" ' | tr ',' '\n' | sed '/^$/d'
}

# mkdir -p, then make the directory reachable for USER: every ancestor USER cannot traverse
# gets `o+x` (search only). No-op when not root (everything runs as the current user).
ensure_traversable() {
    local user=$1 dir=$2 path=""
    is_root || return 0
    mkdir -p "${dir}"
    dir=$(cd "${dir}" && pwd -P)
    local part parts
    IFS=/ read -r -a parts <<<"${dir#/}"
    for part in "" "${parts[@]}"; do
        path="${path%/}/${part}"
        if ! runuser -u "${user}" -- test -x "${path}"; then
            log "adding o+x to ${path} so ${user} can reach ${dir}"
            chmod o+x "${path}"
        fi
    done
}

# The directory for the routes' Unix sockets: root:www-data 0750 when root (only root and nginx
# workers reach the sockets), 0700 otherwise.
make_socket_dir() {
    local dir=$1
    mkdir -p "${dir}"
    if is_root; then
        ensure_traversable "${SOCKET_GROUP}" "$(dirname "${dir}")"
        chown "root:${SOCKET_GROUP}" "${dir}"
        chmod 0750 "${dir}"
    else
        chmod 0700 "${dir}"
    fi
}

# .data/: 0711 when root (the postgres and www-data users traverse it, nobody else lists it).
make_data_dir() {
    local dir=$1
    mkdir -p "${dir}"
    if is_root; then
        chmod 0711 "${dir}"
    else
        chmod 0700 "${dir}"
    fi
}

pg_bin() {
    local dirs=(/usr/lib/postgresql/*/bin) dir
    dir=$(printf '%s\n' "${dirs[@]}" | sort -V | tail -1)
    [[ -d ${dir} ]] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    echo "${dir}"
}

# Runs a command as the cluster owner: `postgres` when root, the current user otherwise.
as_pg_user() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_socket_dir() {
    echo "${1%/}-socket"
}

pg_is_running() {
    local datadir=$1
    [[ -f ${datadir}/PG_VERSION ]] && as_pg_user "$(pg_bin)/pg_ctl" -D "${datadir}" status >/dev/null 2>&1
}

# pg_cluster_start DATADIR PORT [SETTING=VALUE...]: initdb when needed (superuser `postgres`,
# password PG_SUPERUSER_PASSWORD; trust for it on the Unix socket — its directory is 0700, so
# only the cluster owner and root reach it — scram-sha-256 for every other role and on TCP), listen on
# 127.0.0.1:PORT and a Unix socket in DATADIR-socket/, start and wait. Idempotent.
pg_cluster_start() {
    local datadir=$1 port=$2
    shift 2
    [[ -n ${PG_SUPERUSER_PASSWORD:-} ]] || die "pg_cluster_start: call ensure_secrets first"
    local bin sockdir
    bin=$(pg_bin)
    mkdir -p "$(dirname "${datadir}")"
    datadir="$(cd "$(dirname "${datadir}")" && pwd -P)/$(basename "${datadir}")"
    sockdir=$(pg_socket_dir "${datadir}")
    if pg_is_running "${datadir}"; then
        if grep -qx "port = ${port}" "${datadir}/casehug.conf" 2>/dev/null; then
            log "PostgreSQL already running on port ${port} (${datadir})"
            pg_write_hba "${datadir}"
            as_pg_user "${bin}/pg_ctl" -D "${datadir}" reload >/dev/null
            pg_sync_superuser_password "${datadir}" "${port}"
            return 0
        fi
        pg_cluster_stop "${datadir}"
    fi
    mkdir -p "${datadir}" "${sockdir}"
    if is_root; then
        ensure_traversable postgres "$(dirname "${datadir}")"
        chown postgres:postgres "${datadir}" "${sockdir}"
    fi
    chmod 0700 "${datadir}"
    chmod 0700 "${sockdir}"
    if [[ ! -f ${datadir}/PG_VERSION ]]; then
        log "initdb ${datadir}"
        local pwfile
        pwfile=$(mktemp)
        printf '%s\n' "${PG_SUPERUSER_PASSWORD}" >"${pwfile}"
        if is_root; then
            chown postgres "${pwfile}"
        fi
        if ! as_pg_user "${bin}/initdb" -D "${datadir}" -U postgres --pwfile="${pwfile}" \
            --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale >"${datadir}.initdb.log" 2>&1; then
            rm -f "${pwfile}"
            cat "${datadir}.initdb.log" >&2
            die "initdb failed"
        fi
        rm -f "${pwfile}" "${datadir}.initdb.log"
        printf "\ninclude_if_exists = 'casehug.conf'\n" | as_pg_user tee -a "${datadir}/postgresql.conf" >/dev/null
    fi
    {
        echo "# Written by scripts/lib/common.sh on every start."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = ${port}"
        echo "unix_socket_directories = '${sockdir}'"
        local setting
        for setting in "$@"; do
            echo "${setting%%=*} = ${setting#*=}"
        done
    } | as_pg_user tee "${datadir}/casehug.conf" >/dev/null
    pg_write_hba "${datadir}"
    log "starting PostgreSQL on 127.0.0.1:${port} (${datadir})"
    if ! as_pg_user "${bin}/pg_ctl" -D "${datadir}" -l "${datadir}/server.log" -w -t 60 start >/dev/null; then
        local last
        last=$(tail -n 20 "${datadir}/server.log" 2>/dev/null) || true
        printf '%s\n' "${last}" >&2
        if [[ ${last} == *"Address already in use"* ]]; then
            die "PostgreSQL did not start: port ${port} is taken (another checkout's cluster?); stop it or choose another port"
        fi
        die "PostgreSQL did not start (log: ${datadir}/server.log)"
    fi
    pg_sync_superuser_password "${datadir}" "${port}"
}

# Who may connect how (rewritten on every start): the superuser over the Unix socket without a
# password (its directory is 0700: only the cluster owner and root get there), every other
# role only with its password, TCP on loopback only.
pg_write_hba() {
    {
        echo "# Written by scripts/lib/common.sh on every start."
        echo "local all postgres trust"
        echo "local all all scram-sha-256"
        echo "host all all 127.0.0.1/32 scram-sha-256"
    } | as_pg_user tee "$1/pg_hba.conf" >/dev/null
}

# Sets the superuser's password to PG_SUPERUSER_PASSWORD over the Unix socket (trust), so a
# cluster kept across a regenerated .data/secrets.env keeps working. The server gets only the
# SCRAM-SHA-256 verifier (scram_verifier), over stdin; the password is on no command line.
pg_sync_superuser_password() {
    local datadir=$1 port=$2 verifier
    verifier=$(scram_verifier "${PG_SUPERUSER_PASSWORD}")
    printf "SET log_statement = 'none';\nALTER ROLE postgres PASSWORD '%s';\n" "${verifier}" |
        as_pg_user "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_socket_dir "${datadir}")" -p "${port}" \
            -U postgres -d postgres >/dev/null
}

# scram_verifier PASSWORD: the SCRAM-SHA-256 verifier PostgreSQL stores (RFC 7677, 4096
# iterations, as libpq's PQencryptPasswordConn computes it; the cluster starts before
# casehug-admin is built). The password reaches python3 through its environment. No SASLprep:
# the generated passwords are ASCII, which SASLprep leaves unchanged.
scram_verifier() {
    SCRAM_PASSWORD=$1 python3 -c '
import base64, hashlib, hmac, os
password = os.environ["SCRAM_PASSWORD"].encode()
salt, iterations = os.urandom(16), 4096
salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
server = hmac.new(salted, b"Server Key", "sha256").digest()
b64 = lambda data: base64.b64encode(data).decode()
print(f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}")'
}

pg_cluster_stop() {
    local datadir=$1
    if pg_is_running "${datadir}"; then
        log "stopping PostgreSQL (${datadir})"
        as_pg_user "$(pg_bin)/pg_ctl" -D "${datadir}" -m fast -w -t 60 stop >/dev/null
    fi
}

# libpq URI for the superuser on the local cluster.
pg_superuser_url() {
    local port=$1 database=$2
    echo "postgresql://postgres:${PG_SUPERUSER_PASSWORD}@127.0.0.1:${port}/${database}"
}

# libpq URI for the restricted application role over the cluster's Unix socket:
# pg_app_url DATADIR PORT DATABASE. A local socket costs PostgreSQL and the route noticeably
# less CPU per round trip than TCP on loopback; the role still needs its password there.
pg_app_url() {
    pg_socket_url "$1" "$2" "$3" casehug_app "${APP_DB_PASSWORD}"
}

# Percent-encodes every byte but unreserved characters (RFC 3986), '/' included.
uri_encode() {
    local LC_ALL=C
    local text=$1 out='' i c
    for ((i = 0; i < ${#text}; i++)); do
        c=${text:i:1}
        case ${c} in
            [A-Za-z0-9._~-]) out+=${c} ;;
            *) out+=$(printf '%%%02X' "'${c}") ;;
        esac
    done
    echo "${out}"
}

# psql as the superuser over TCP: pg_psql PORT DATABASE [psql args...]
pg_psql() {
    local port=$1 database=$2
    shift 2
    PGPASSWORD=${PG_SUPERUSER_PASSWORD} "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 \
        -h 127.0.0.1 -p "${port}" -U postgres -d "${database}" "$@"
}

# pg_ensure_database PORT DATABASE [OWNER]: creates DATABASE unless it exists. With OWNER, a
# database owned by another role (left by an older version of the scripts) is recreated.
pg_ensure_database() {
    local port=$1 database=$2 owner=${3:-} current
    current=$(pg_psql "${port}" postgres -tAc \
        "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = '${database}'")
    if [[ -n ${current} && -n ${owner} && ${current} != "${owner}" ]]; then
        log "recreating database ${database} for owner ${owner}"
        pg_psql "${port}" postgres -c "DROP DATABASE \"${database}\" WITH (FORCE)"
        current=""
    fi
    if [[ -z ${current} ]]; then
        log "creating database ${database}"
        pg_psql "${port}" postgres -c "CREATE DATABASE \"${database}\"${owner:+ OWNER \"${owner}\"}"
    fi
}

# libpq URI for ROLE on the cluster's Unix socket: pg_socket_url DATADIR PORT DATABASE ROLE PASSWORD.
pg_socket_url() {
    local datadir=$1 port=$2 database=$3 role=$4 password=$5 sockdir
    datadir="$(cd "$(dirname "${datadir}")" && pwd -P)/$(basename "${datadir}")"
    sockdir=$(pg_socket_dir "${datadir}")
    # The socket directory goes percent-encoded in the host part: no `?` or `&`, so the URI can
    # sit unquoted in a file that shells source (.data/demo.env).
    echo "postgresql://${role}:${password}@$(uri_encode "${sockdir}"):${port}/${database}"
}

# wait_for_http URL TIMEOUT_SECONDS [BEARER_TOKEN]: until URL answers 2xx. The token goes to
# curl on stdin (--config -), not on its command line.
wait_for_http() {
    local url=$1 timeout=$2 config=""
    if [[ -n ${3:-} ]]; then
        config="header = \"Authorization: Bearer $3\""
    fi
    local deadline=$((SECONDS + timeout))
    until printf '%s\n' "${config}" | curl -fsS -o /dev/null --max-time 2 --config - "${url}" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "no 2xx answer from ${url} within ${timeout}s"
            return 1
        fi
        sleep 0.1
    done
}

# wait_for_socket PATH TIMEOUT_SECONDS
wait_for_socket() {
    local path=$1 timeout=$2
    local deadline=$((SECONDS + timeout))
    until [[ -S ${path} ]]; do
        if ((SECONDS >= deadline)); then
            log "socket ${path} did not appear within ${timeout}s"
            return 1
        fi
        sleep 0.05
    done
}

# start_route LOGFILE PIDFILE EXECUTABLE ARGS...: runs a route in its own session (so Ctrl-C in
# the terminal does not reach it and its workers can be killed as a group), records its pid.
# Give it secrets as assignments before the call (`NAME=VALUE start_route ...`): bash exports
# them to what the function runs, and they stay off every command line.
start_route() {
    local logfile=$1 pidfile=$2
    shift 2
    setsid "$@" </dev/null >>"${logfile}" 2>&1 &
    echo $! >"${pidfile}"
}

# stop_pidfile PIDFILE: SIGTERM the process (a route supervisor finishes in-flight requests and
# stops its workers), wait up to 15 s, then SIGKILL its process group. Removes PIDFILE.
stop_pidfile() {
    local pidfile=$1 pid
    [[ -f ${pidfile} ]] || return 0
    pid=$(<"${pidfile}")
    rm -f "${pidfile}"
    [[ ${pid} =~ ^[0-9]+$ ]] || return 0
    kill -0 "${pid}" 2>/dev/null || return 0
    # Never signal a recycled pid: a route's command line names its socket (the sandbox's
    # webhook dispatcher, which has none, is `smokeball-sandbox deliver`; the job worker, which
    # has none either, is `.../worker --workers N`).
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/${pid}/cmdline" 2>/dev/null) || return 0
    [[ ${cmdline} == *--socket* || ${cmdline} == *"smokeball-sandbox deliver"* ||
        ${cmdline} == */worker\ --workers* ]] || return 0
    kill -TERM "${pid}" 2>/dev/null || return 0
    local deadline=$((SECONDS + 15))
    while kill -0 "${pid}" 2>/dev/null; do
        # A child of this shell stays a zombie until reaped.
        if [[ "$(awk '{print $3}' "/proc/${pid}/stat" 2>/dev/null)" == Z ]]; then
            break
        fi
        if ((SECONDS >= deadline)); then
            log "pid ${pid} ignored SIGTERM: killing its process group"
            kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
            break
        fi
        sleep 0.05
    done
    wait "${pid}" 2>/dev/null || true
}

# nginx for a prefix rendered by scripts/render-nginx.
nginx_start() {
    local prefix=$1 bin
    bin=$(nginx_bin) || die "nginx not found"
    "${bin}" -q -t -p "${prefix}" -c "${prefix}/nginx.conf" -e "${prefix}/logs/error.log" ||
        die "nginx configuration test failed (${prefix}/nginx.conf)"
    "${bin}" -p "${prefix}" -c "${prefix}/nginx.conf" -e "${prefix}/logs/error.log" ||
        die "nginx did not start (log: ${prefix}/logs/error.log)"
}

nginx_stop() {
    local prefix=$1 bin pid
    [[ -f ${prefix}/nginx.pid ]] || return 0
    pid=$(<"${prefix}/nginx.pid")
    if [[ ${pid} =~ ^[0-9]+$ ]] && kill -0 "${pid}" 2>/dev/null; then
        bin=$(nginx_bin) || die "nginx not found"
        "${bin}" -p "${prefix}" -c "${prefix}/nginx.conf" -e "${prefix}/logs/error.log" -s quit 2>/dev/null ||
            kill -QUIT "${pid}" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while kill -0 "${pid}" 2>/dev/null; do
            if ((SECONDS >= deadline)); then
                kill -TERM "${pid}" 2>/dev/null || true
                break
            fi
            sleep 0.05
        done
    fi
    rm -f "${prefix}/nginx.pid"
}

# `swift build` in the repository; SWIFT_SCRATCH_PATH (optional) selects another build directory
# than .build, e.g. to build next to an editor's build without sharing it.
swift_build() {
    local args=()
    if [[ -n ${SWIFT_SCRATCH_PATH:-} ]]; then
        args=(--scratch-path "${SWIFT_SCRATCH_PATH}")
    fi
    swift build "${args[@]}" "$@"
}

swift_test() {
    local args=()
    if [[ -n ${SWIFT_SCRATCH_PATH:-} ]]; then
        args=(--scratch-path "${SWIFT_SCRATCH_PATH}")
    fi
    swift test "${args[@]}" "$@"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
