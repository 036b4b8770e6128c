# shellcheck shell=bash
# Releases and blue/green slots, shared by scripts/run (which starts slot a of every unit) and
# scripts/deploy (which swaps slots). Source it after common.sh; docs/deploy.md explains the design.
#
# Layout under PREFIX (.data/run locally, /opt/casehug in production):
#   releases/UNIT/ID/UNIT       an installed binary (never modified once there)
#   releases/UNIT/current       -> ID, the release a slot starts from (what systemd's ExecStart runs)
#   releases/UNIT/previous      -> ID, what --rollback puts back
#   sockets/ROUTE-a.sock, sockets/ROUTE-b.sock
#                               each slot's own FastCGI socket (production: in sockets/ROUTE/,
#                               see route_socket_dir)
#   sockets/ROUTE.sock          -> ROUTE-a.sock or ROUTE-b.sock: what nginx connects to
#   slots/UNIT                  -> a or b: the live slot (for the worker, which has no socket)
# Local only (scripts/run writes them; systemd units hold the same in production):
#   launch/UNIT.env             the unit's environment (0600, `NAME=VALUE` lines quoted for bash)
#   launch/UNIT.args            its arguments besides --socket, one a line
#   pids/UNIT-SLOT.pid, logs/UNIT-SLOT.log

# The id a new release of the binary at PATH gets: UTC time to the millisecond and the start of
# its SHA-256 (so equal binaries are recognisable).
release_id() {
    local sha
    sha=$(sha256sum "$1" | cut -c1-12)
    printf '%s-%s\n' "$(date -u +%Y%m%dT%H%M%S%3NZ)" "${sha}"
}

# release_install PREFIX UNIT PATH: copies the binary into a new release directory and prints the
# id. The copy is made under a temporary name and renamed, so a release directory is complete or
# absent.
release_install() {
    local prefix=$1 unit=$2 binary=$3 id dir
    [[ -x ${binary} ]] || die "${binary} is not an executable"
    id=$(release_id "${binary}")
    dir=${prefix}/releases/${unit}
    mkdir -p "${dir}"
    while [[ -e ${dir}/${id} ]]; do
        id=${id}x
    done
    rm -rf "${dir}/.new-${id}"
    mkdir "${dir}/.new-${id}"
    cp "${binary}" "${dir}/.new-${id}/${unit}"
    chmod 0755 "${dir}/.new-${id}" "${dir}/.new-${id}/${unit}"
    mv -T "${dir}/.new-${id}" "${dir}/${id}"
    printf '%s\n' "${id}"
}

# release_pointer PREFIX UNIT NAME: the id `current` or `previous` points to (empty when none).
release_pointer() {
    local link=$1/releases/$2/$3
    [[ -L ${link} ]] && readlink "${link}" || true
}

# set_link TARGET LINK: points LINK at TARGET with one rename(2), so a reader sees the old or the
# new target, never no link.
set_link() {
    local target=$1 link=$2
    ln -sfn "${target}" "${link}.new"
    mv -T "${link}.new" "${link}"
}

# release_point PREFIX UNIT NAME ID: points `current` or `previous` at ID (empty ID: removes it).
release_point() {
    local link=$1/releases/$2/$3
    if [[ -z $4 ]]; then
        rm -f "${link}"
    else
        set_link "$4" "${link}"
    fi
}

# live_slot PREFIX UNIT: a or b, or empty when no slot is live yet.
live_slot() {
    local link=$1/slots/$2
    [[ -L ${link} ]] && readlink "${link}" || true
}

other_slot() {
    [[ $1 == a ]] && echo b || echo a
}

# route_socket_dir BACKEND PREFIX ROUTE: the directory of a route's sockets (both slots' and the
# ROUTE.sock symlink). Under systemd one per route, PREFIX/sockets/ROUTE (deploy/install makes it:
# owner the route's user, group www-data, 2750, so only nginx and that route reach its sockets;
# under /opt, so the symlink to the live slot survives a reboot). Locally all in PREFIX/sockets
# (nginx/nginx.conf.template's layout). The one place that choice is made.
route_socket_dir() {
    if [[ $1 == systemd ]]; then
        printf '%s/sockets/%s\n' "$2" "$3"
    else
        printf '%s/sockets\n' "$2"
    fi
}

# slot_socket BACKEND PREFIX ROUTE SLOT: the slot's own socket.
slot_socket() {
    printf '%s/%s-%s.sock\n' "$(route_socket_dir "$1" "$2" "$3")" "$3" "$4"
}

# live_socket BACKEND PREFIX ROUTE: the symlink nginx connects to, pointing at the live slot's
# socket (a name relative to its directory).
live_socket() {
    printf '%s/%s.sock\n' "$(route_socket_dir "$1" "$2" "$3")" "$3"
}

# point_live_socket BACKEND PREFIX ROUTE SLOT: points the route's symlink at the slot's socket
# (a name relative to the directory both are in), with one rename(2).
point_live_socket() {
    set_link "$(basename "$(slot_socket "$@")")" "$(live_socket "$1" "$2" "$3")"
}

# systemd_unit UNIT SLOT: the systemd unit that runs one slot (deploy/systemd): a route's
# casehug-route@ROUTE-SLOT.service (deploy/install writes each one's drop-in), the worker's
# casehug-worker@SLOT.service.
systemd_unit() {
    if [[ $1 == worker ]]; then
        printf 'casehug-worker@%s.service\n' "$2"
    else
        printf 'casehug-route@%s-%s.service\n' "$1" "$2"
    fi
}

# slot_start_local PREFIX UNIT SLOT [--socket]: starts the unit's current release as SLOT with
# the environment and arguments in launch/ (secrets stay in the environment, off every command
# line), in its own session; its pid goes to pids/UNIT-SLOT.pid. With --socket, the slot listens
# on its own socket (see slot_socket).
slot_start_local() {
    local prefix=$1 unit=$2 slot=$3 with_socket=${4:-}
    local env_file=${prefix}/launch/${unit}.env args_file=${prefix}/launch/${unit}.args
    [[ -f ${env_file} && -f ${args_file} ]] || die "no ${env_file} or ${args_file} (start the service with scripts/run)"
    local args=() name
    mapfile -t args <"${args_file}"
    if [[ ${with_socket} == --socket ]]; then
        args+=(--socket "$(slot_socket local "${prefix}" "${unit}" "${slot}")")
    fi
    mkdir -p "${prefix}/logs" "${prefix}/pids"
    (
        # The launch file is the whole environment, as systemd's EnvironmentFile= would make it.
        for name in $(compgen -e); do
            unset "${name}" 2>/dev/null || true
        done
        set -a
        # shellcheck disable=SC1090
        source "${env_file}"
        set +a
        exec setsid "${prefix}/releases/${unit}/current/${unit}" "${args[@]}"
    ) </dev/null >>"${prefix}/logs/${unit}-${slot}.log" 2>&1 &
    local pid=$! tries
    echo "${pid}" >"${prefix}/pids/${unit}-${slot}.pid"
    # Returns once the process runs the release (before that it is this shell's copy, and
    # scripts/deploy would not recognise it as the slot's), or has already exited.
    for ((tries = 0; tries < 200; tries++)); do
        [[ "$(readlink "/proc/${pid}/exe" 2>/dev/null)" != "${prefix}/releases/${unit}/"* ]] || break
        kill -0 "${pid}" 2>/dev/null || break
        sleep 0.025
    done
}

# launch_write PREFIX UNIT ARGS...: records how scripts/deploy starts UNIT: its arguments
# (launch/UNIT.args) and its environment (launch/UNIT.env, 0600): every exported variable of the
# caller, including assignments given for this call (`NAME=VALUE launch_write ...`), except the
# passwords named in LAUNCH_UNSET, which no unit gets. The file is the unit's whole environment.
LAUNCH_UNSET="PG_SUPERUSER_PASSWORD APP_DB_PASSWORD SANDBOX_DB_PASSWORD WORKER_DB_PASSWORD OPS_DB_PASSWORD PGPASSWORD"
launch_write() {
    local prefix=$1 unit=$2 name
    shift 2
    mkdir -p "${prefix}/launch"
    chmod 0700 "${prefix}/launch"
    (
        umask 077
        for name in $(compgen -e); do
            case " ${LAUNCH_UNSET} SHLVL PWD OLDPWD _ " in
                *" ${name} "*) continue ;;
            esac
            printf '%s=%q\n' "${name}" "${!name}"
        done >"${prefix}/launch/${unit}.env.new"
        mv -f "${prefix}/launch/${unit}.env.new" "${prefix}/launch/${unit}.env"
    )
    : >"${prefix}/launch/${unit}.args"
    if (($# > 0)); then
        printf '%s\n' "$@" >"${prefix}/launch/${unit}.args"
    fi
}

# release_prune PREFIX UNIT KEEP: removes all but the KEEP newest releases, never the ones
# `current` or `previous` point to.
release_prune() {
    local prefix=$1 unit=$2 keep=$3 dir current previous id
    dir=${prefix}/releases/${unit}
    current=$(release_pointer "${prefix}" "${unit}" current)
    previous=$(release_pointer "${prefix}" "${unit}" previous)
    # Ids start with their UTC time, so name order is age order.
    while read -r id; do
        [[ -n ${id} && ${id} != "${current}" && ${id} != "${previous}" ]] || continue
        rm -rf "${dir:?}/${id}"
    done < <(find "${dir}" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' -printf '%f\n' | sort -r | tail -n +$((keep + 1)))
}

# slot_boot PREFIX UNIT BINARY [--socket]: what scripts/run does for each unit: BINARY becomes the
# current release (a new one unless current already holds the same bytes), slot a starts from it
# and is made live.
slot_boot() {
    local prefix=$1 unit=$2 binary=$3 with_socket=${4:-} current id
    current=$(release_pointer "${prefix}" "${unit}" current)
    if [[ -n ${current} ]] && cmp -s "${binary}" "${prefix}/releases/${unit}/${current}/${unit}"; then
        id=${current}
    else
        id=$(release_install "${prefix}" "${unit}" "${binary}")
        [[ -z ${current} ]] || release_point "${prefix}" "${unit}" previous "${current}"
        release_point "${prefix}" "${unit}" current "${id}"
    fi
    mkdir -p "${prefix}/slots"
    slot_start_local "${prefix}" "${unit}" a "${with_socket}"
    set_link a "${prefix}/slots/${unit}"
    if [[ ${with_socket} == --socket ]]; then
        point_live_socket local "${prefix}" "${unit}" a
    fi
    release_prune "${prefix}" "${unit}" "${DEPLOY_KEEP:-5}"
}
