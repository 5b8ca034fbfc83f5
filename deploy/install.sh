#!/usr/bin/env bash
# Install, update or roll back lobbywatch on an NVIDIA Jetson (JetPack 6) or an Intel NUC
# (Ubuntu 22.04/24.04). Idempotent: run it again and it changes only what is missing or stale.
#
#   deploy/install.sh [install|update|rollback|activate VERSION|status] [options]
#
#   install   (default) packages, user, directories, a venv for this version under
#             PREFIX/<version>, PREFIX/current -> it, config templates, the broker, the units
#   update    install this version, restart, run the health check; on failure switch back to
#             the previous version and restart it (exit 1)
#   rollback  point PREFIX/current back at PREFIX/previous and restart
#   activate VERSION   point PREFIX/current at an installed version and restart
#   status    installed versions, current and previous, service states
#
# Options:
#   --target jetson|nuc|auto   hardware (auto: /etc/nv_tegra_release means Jetson, an Intel CPU a NUC)
#   --source PATH      lobbywatch checkout or wheel to install (default: this script's checkout)
#   --version V        name of the version directory (default: the package version, plus
#                      +g<commit> for a git checkout, so a new commit is a new version)
#   --wheelhouse DIR   install offline: pip --no-index --find-links DIR
#   --jetson-index URL extra package index for JetPack's onnxruntime-gpu
#                      (default: https://pypi.jetson-ai-lab.io/jp6/cu126)
#   --prefix DIR       where versions live (default /opt/lobbywatch)
#   --site-id ID       site id for a new config and the broker's device user (default: hostname)
#   --keep N           installed versions to keep (default 3; current and previous always stay)
#   --health-cmd CMD   update's health check (default: the service is active and
#                      `lobbywatch doctor` passes), retried for --health-timeout seconds (180)
#   --no-broker        leave Mosquitto alone (a broker elsewhere)
#   --no-system        only the versions under --prefix: no packages, user, /etc, broker, systemd
#                      (for a staging directory, and tests)
#   --no-start         install and enable the units, start nothing
#   --dry-run          print what would be done; change nothing
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

COMMAND=install
ACTIVATE_VERSION=""
TARGET=auto
SOURCE=$REPO
VERSION=""
WHEELHOUSE=""
JETSON_INDEX=https://pypi.jetson-ai-lab.io/jp6/cu126
PREFIX=/opt/lobbywatch
SITE_ID=""
KEEP=3
HEALTH_CMD=""
BROKER=1
SYSTEM=1
START=1
DRY_RUN=0

SERVICE_USER=lobbywatch
ETC=/etc/lobbywatch
STATE=/var/lib/lobbywatch
CACHE=/var/cache/lobbywatch
UNIT_DIR=/etc/systemd/system
HEALTH_TIMEOUT_S=180

# --- helpers ---------------------------------------------------------------------------------

step() { printf '\n== %s\n' "$*"; }
note() { printf '   %s\n' "$*"; }
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

# Run a command that changes the system, or print it under --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '   + %s\n' "$*"
    else
        printf '   + %s\n' "$*"
        "$@"
    fi
}

# install_file SRC DEST MODE [OWNER]: copy when missing or different.
install_file() {
    local src=$1 dest=$2 mode=$3 owner=${4:-root:root}
    if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
        note "unchanged: $dest"
        return 1
    fi
    run install -D -m "$mode" -o "${owner%%:*}" -g "${owner##*:}" "$src" "$dest"
    return 0
}

# install_once SRC DEST MODE [OWNER]: copy only when DEST does not exist (site files IT edits).
install_once() {
    local owner=${4:-root:root}
    if [[ -e $2 ]]; then
        note "kept (site file): $2"
        return 0
    fi
    run install -D -m "$3" -o "${owner%%:*}" -g "${owner##*:}" "$1" "$2"
}

have() { command -v "$1" >/dev/null 2>&1; }

detect_target() {
    if [[ $TARGET != auto ]]; then
        [[ $TARGET == jetson || $TARGET == nuc ]] || die "--target must be jetson, nuc or auto"
        return
    fi
    if [[ -f /etc/nv_tegra_release ]]; then
        TARGET=jetson
    elif grep -q GenuineIntel /proc/cpuinfo 2>/dev/null; then
        TARGET=nuc
    else
        TARGET=nuc
        note "neither a Jetson nor an Intel CPU: installing as --target nuc (OpenVINO runs on the CPU)"
    fi
}

source_version() {
    if [[ -n $VERSION ]]; then
        echo "$VERSION"
        return
    fi
    local version
    if [[ -f $SOURCE && $SOURCE == *.whl ]]; then
        version=$(basename "$SOURCE" | cut -d- -f2)
    elif [[ -f $SOURCE/pyproject.toml ]]; then
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$SOURCE/pyproject.toml" | head -n1)
        if git -C "$SOURCE" rev-parse --short=10 HEAD >/dev/null 2>&1; then
            version+="+g$(git -C "$SOURCE" rev-parse --short=10 HEAD)"
            # Uncommitted changes: a development install, rebuilt every time (install_version).
            [[ -z $(git -C "$SOURCE" status --porcelain --untracked-files=no) ]] || version+=".dirty"
        fi
    else
        die "--source $SOURCE is neither a lobbywatch checkout nor a wheel"
    fi
    [[ -n $version ]] || die "cannot tell the version of $SOURCE (use --version)"
    echo "$version"
}

link_target() { # the version a symlink in PREFIX points at, or nothing
    if [[ -L $PREFIX/$1 ]]; then
        basename "$(readlink "$PREFIX/$1")"
    fi
}

# Version directories with a completion marker, newest first (current and previous are links).
installed_versions() {
    local marker dir
    # shellcheck disable=SC2012  # version names are ours: no newlines or odd characters
    ls -1t "$PREFIX"/*/.complete 2>/dev/null | while IFS= read -r marker; do
        dir=$(dirname "$marker")
        [[ -L $dir ]] || basename "$dir"
    done
}

# Point PREFIX/NAME at VERSION atomically: a new link renamed over the old one (rename(2)), so
# a service starting at that moment sees either version, never a missing link.
set_link() {
    local name=$1 version=$2
    if [[ $(link_target "$name") == "$version" ]]; then
        note "$PREFIX/$name -> $version already"
        return
    fi
    run ln -sfn "$version" "$PREFIX/.$name.new"
    run mv -T "$PREFIX/.$name.new" "$PREFIX/$name"
}

systemctl_ok() { ((SYSTEM)) && have systemctl && [[ -d /run/systemd/system ]]; }

restart_services() {
    if ! ((SYSTEM)); then
        note "--no-system: no services to restart"
        return
    fi
    if ! ((START)); then
        note "--no-start: not restarting"
        return
    fi
    if systemctl_ok || ((DRY_RUN)); then
        run systemctl restart lobbywatch.service lobbywatch-api.service
    else
        note "systemd is not running here: start lobbywatch yourself"
    fi
}

# --- steps -----------------------------------------------------------------------------------

preflight() {
    step "preflight"
    detect_target
    note "target: $TARGET; prefix: $PREFIX; source: $SOURCE"
    if ((SYSTEM)) && ((EUID != 0)) && ! ((DRY_RUN)); then
        die "run as root (sudo), or --dry-run to see the plan"
    fi
    local os="unknown"
    if [[ -r /etc/os-release ]]; then
        # shellcheck disable=SC1091
        os=$(. /etc/os-release && echo "${ID:-?} ${VERSION_ID:-?}")
    fi
    case "$TARGET:$os" in
        jetson:ubuntu\ 22.04) note "JetPack 6 (L4T $(head -c 40 /etc/nv_tegra_release 2>/dev/null | tr -d '#' || true))" ;;
        nuc:ubuntu\ 22.04 | nuc:ubuntu\ 24.04) note "Ubuntu $os" ;;
        *) note "WARNING: $os is not a tested base for --target $TARGET (Ubuntu 22.04/24.04, JetPack 6)" ;;
    esac
    have python3 || die "python3 is missing (apt install python3)"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
        die "Python >= 3.10 is needed, found $(python3 -V 2>&1)"
    note "$(python3 -V 2>&1)"
}

install_packages() {
    step "system packages"
    ((SYSTEM)) || { note "--no-system: skipped"; return; }
    local wanted=(python3-venv python3-pip openssl ca-certificates)
    ((BROKER)) && wanted+=(mosquitto mosquitto-clients)
    # The Intel compute runtime lets OpenVINO use the iGPU; the NPU driver is a separate
    # download from Intel (deploy/README.md).
    [[ $TARGET == nuc ]] && wanted+=(intel-opencl-icd)
    local missing=() pkg
    for pkg in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        note "present: ${wanted[*]}"
        return
    fi
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
}

create_user() {
    step "service user"
    ((SYSTEM)) || { note "--no-system: skipped"; return; }
    if id "$SERVICE_USER" >/dev/null 2>&1; then
        note "user $SERVICE_USER exists"
    else
        run useradd --system --user-group --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin --comment "lobbywatch service" "$SERVICE_USER"
    fi
    local group
    for group in video render; do
        getent group "$group" >/dev/null 2>&1 || continue
        if id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
            note "$SERVICE_USER is in $group"
        else
            run usermod -a -G "$group" "$SERVICE_USER"
        fi
    done
}

create_dirs() {
    step "directories"
    run mkdir -p "$PREFIX"
    ((SYSTEM)) || return 0
    local spec path mode owner
    for spec in "$ETC:0750:root:$SERVICE_USER" "$STATE:0750:$SERVICE_USER:$SERVICE_USER" \
        "$STATE/models:0750:$SERVICE_USER:$SERVICE_USER" "$CACHE:0750:$SERVICE_USER:$SERVICE_USER"; do
        IFS=: read -r path mode owner group <<<"$spec"
        if [[ -d $path ]]; then
            note "exists: $path"
        else
            run install -d -m "$mode" -o "$owner" -g "$group" "$path"
        fi
    done
}

# A venv per version, built in place (a venv cannot be moved: its scripts name its python) and
# marked complete last; an unmarked directory is a broken earlier attempt and is rebuilt.
install_version() {
    local version=$1 dir="$PREFIX/$1"
    step "lobbywatch $version"
    if [[ -f $dir/.complete && $1 != *.dirty ]]; then
        note "installed: $dir"
        return
    fi
    [[ -d $dir ]] && run rm -rf "$dir"
    local pip_opts=(--quiet --disable-pip-version-check)
    [[ -n $WHEELHOUSE ]] && pip_opts+=(--no-index --find-links "$WHEELHOUSE")
    local spec=$SOURCE
    [[ $TARGET == nuc ]] && spec="${SOURCE}[openvino]"
    run python3 -m venv "$dir"
    run "$dir/bin/pip" install "${pip_opts[@]}" --upgrade pip
    run "$dir/bin/pip" install "${pip_opts[@]}" "$spec"
    if [[ $TARGET == jetson ]]; then
        # PyPI's onnxruntime for aarch64 has no CUDA or TensorRT: swap it for JetPack's build.
        local index=()
        [[ -z $WHEELHOUSE ]] && index=(--extra-index-url "$JETSON_INDEX")
        run "$dir/bin/pip" uninstall --yes onnxruntime
        run "$dir/bin/pip" install "${pip_opts[@]}" "${index[@]}" onnxruntime-gpu
    fi
    # Units, broker templates and this script travel with the version, for update and rollback.
    if [[ -d $SOURCE/deploy ]]; then
        run mkdir -p "$dir/share/lobbywatch"
        run cp -a "$SOURCE/deploy" "$dir/share/lobbywatch/deploy"
    fi
    printf '   + %s\n' "$dir/bin/lobbywatch --help >/dev/null"
    ((DRY_RUN)) || "$dir/bin/lobbywatch" --help >/dev/null
    run touch "$dir/.complete"
}

activate() {
    local version=$1
    step "activate $version"
    [[ -f $PREFIX/$version/.complete ]] || ((DRY_RUN)) ||
        die "$PREFIX/$version is not a complete installation"
    local current
    current=$(link_target current)
    if [[ -n $current && $current != "$version" ]]; then
        set_link previous "$current"
    fi
    set_link current "$version"
}

install_config() {
    step "configuration ($ETC)"
    ((SYSTEM)) || { note "--no-system: skipped"; return; }
    local site=${SITE_ID:-$(hostname -s)} tmp
    [[ $site =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || die "site id $site is not valid (--site-id)"
    tmp=$(mktemp)
    sed "s/@@SITE_ID@@/$site/g" "$HERE/lobbywatch.example.yaml" >"$tmp"
    install_once "$tmp" "$ETC/lobbywatch.yaml" 0640 "root:$SERVICE_USER"
    install_once "$HERE/lobbywatch.env.example" "$ETC/lobbywatch.env" 0640 "root:$SERVICE_USER"
    rm -f "$tmp"
    note "edit $ETC/lobbywatch.yaml (cameras, zones) and $ETC/lobbywatch.env (API keys)"
}

setup_broker() {
    step "broker (Mosquitto, TLS, ACL)"
    ((SYSTEM && BROKER)) || { note "skipped"; return; }
    # --no-reload: mosquitto is restarted once at the end of this step.
    local site=${SITE_ID:-$(hostname -s)} broker=("$HERE/mosquitto/broker.sh" --no-reload)
    # broker.sh has its own --dry-run, which shows the files it would write: run it for real.
    ((DRY_RUN)) && broker+=(--dry-run)
    run_broker() { printf '   + %s\n' "${broker[*]} $*"; "${broker[@]}" "$@" | sed 's/^/     /'; }
    run_broker setup
    if [[ -f /etc/mosquitto/lobbywatch/certs/server.crt ]]; then
        note "server certificate present"
    else
        run_broker certs --host "$(hostname -f 2>/dev/null || hostname)" \
            --host "$(hostname -s)" --host localhost --ip 127.0.0.1
    fi
    run_broker add-device "$site" --generate "$ETC/mqtt.password" \
        --owner "root:$SERVICE_USER"
    if [[ -f /etc/mosquitto/lobbywatch/certs/ca.crt ]]; then
        install_file /etc/mosquitto/lobbywatch/certs/ca.crt "$ETC/broker-ca.crt" 0644 || true
    else
        note "would copy the broker CA to $ETC/broker-ca.crt"
    fi
    if systemctl_ok || ((DRY_RUN)); then
        run systemctl enable mosquitto.service
        run systemctl restart mosquitto.service
    fi
}

install_units() {
    step "systemd units"
    ((SYSTEM)) || { note "--no-system: skipped"; return; }
    local changed=0 unit
    for unit in lobbywatch.service lobbywatch-api.service; do
        install_file "$HERE/systemd/$unit" "$UNIT_DIR/$unit" 0644 && changed=1
    done
    if systemctl_ok || ((DRY_RUN)); then
        ((changed)) && run systemctl daemon-reload
        run systemctl enable lobbywatch.service lobbywatch-api.service
    else
        note "systemd is not running here: enable the units on the device"
    fi
}

prune() {
    step "old versions (keep $KEEP)"
    local current previous name kept=0
    current=$(link_target current)
    previous=$(link_target previous)
    while IFS= read -r name; do
        if [[ $name == "$current" || $name == "$previous" ]] || ((kept < KEEP)); then
            kept=$((kept + 1))
            continue
        fi
        run rm -rf "${PREFIX:?}/$name"
    done < <(installed_versions)
    note "installed: $(installed_versions | tr '\n' ' ')"
}

health_check() {
    step "health check"
    local cmd=$HEALTH_CMD
    if [[ -z $cmd ]]; then
        cmd="systemctl is-active --quiet lobbywatch.service && $PREFIX/current/bin/lobbywatch doctor"
    fi
    if ((DRY_RUN)); then
        note "+ $cmd   (retried for up to ${HEALTH_TIMEOUT_S} s)"
        return 0
    fi
    local deadline=$((SECONDS + HEALTH_TIMEOUT_S))
    while true; do
        if bash -c "$cmd"; then
            note "healthy"
            return 0
        fi
        ((SECONDS + 10 < deadline)) || break
        sleep 10
    done
    note "unhealthy after ${HEALTH_TIMEOUT_S} s: $cmd"
    return 1
}

show_status() {
    step "status"
    note "current:  $(link_target current)"
    note "previous: $(link_target previous)"
    note "installed: $(installed_versions | tr '\n' ' ')"
    if systemctl_ok; then
        systemctl --no-pager --lines=0 status lobbywatch.service lobbywatch-api.service mosquitto.service || true
    fi
}

# --- commands --------------------------------------------------------------------------------

cmd_install() {
    local version
    version=$(source_version)
    preflight
    install_packages
    create_user
    create_dirs
    install_version "$version"
    activate "$version"
    install_config
    setup_broker
    install_units
    prune
    step "start"
    if ((SYSTEM && START)) && { systemctl_ok || ((DRY_RUN)); }; then
        run systemctl restart lobbywatch.service lobbywatch-api.service
        note "check with: $PREFIX/current/bin/lobbywatch doctor"
    else
        note "not started (--no-start, --no-system, or no systemd here)"
    fi
    ((DRY_RUN)) && step "dry run: nothing was changed"
    return 0
}

cmd_update() {
    local version previous
    version=$(source_version)
    preflight
    previous=$(link_target current)
    install_version "$version"
    activate "$version"
    install_units
    restart_services
    if health_check; then
        prune
        return 0
    fi
    if [[ -n $previous && $previous != "$version" ]]; then
        echo "install.sh: $version failed its health check: rolling back to $previous" >&2
        activate "$previous"
        restart_services
    fi
    return 1
}

cmd_rollback() {
    local previous
    previous=$(link_target previous)
    [[ -n $previous ]] || die "no previous version in $PREFIX to roll back to"
    activate "$previous"
    restart_services
}

main() {
    if (($#)) && [[ $1 != -* ]]; then
        COMMAND=$1
        shift
        if [[ $COMMAND == activate ]]; then
            (($#)) || die "activate needs a VERSION"
            ACTIVATE_VERSION=$1
            shift
        fi
    fi
    while (($#)); do
        case $1 in
            --target) TARGET=$2; shift 2 ;;
            --source) SOURCE=$(realpath "$2"); shift 2 ;;
            --version) VERSION=$2; shift 2 ;;
            --wheelhouse) WHEELHOUSE=$(realpath "$2"); shift 2 ;;
            --jetson-index) JETSON_INDEX=$2; shift 2 ;;
            --prefix) PREFIX=$2; shift 2 ;;
            --site-id) SITE_ID=$2; shift 2 ;;
            --keep) KEEP=$2; shift 2 ;;
            --health-cmd) HEALTH_CMD=$2; shift 2 ;;
            --health-timeout) HEALTH_TIMEOUT_S=$2; shift 2 ;;
            --no-broker) BROKER=0; shift ;;
            --no-system) SYSTEM=0; shift ;;
            --no-start) START=0; shift ;;
            --dry-run) DRY_RUN=1; shift ;;
            -h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown option $1 (--help lists them)" ;;
        esac
    done
    [[ $KEEP =~ ^[0-9]+$ ]] || die "--keep must be a number"
    case $COMMAND in
        install) cmd_install ;;
        update) cmd_update ;;
        rollback) cmd_rollback ;;
        activate) activate "$ACTIVATE_VERSION" && restart_services ;;
        status) show_status ;;
        *) die "unknown command $COMMAND (--help lists them)" ;;
    esac
}

main "$@"
