#!/usr/bin/env bash
# Set up and manage the lobbywatch Mosquitto broker: configuration, TLS certificates, users, ACL.
#
#   broker.sh [--dir DIR] [--conf FILE] [--dry-run] [--no-reload] COMMAND [ARGS]
#
#   setup [--prefix P] [--tls-port 8883] [--ws-port 8884] [--listen ADDR] [--require-certificate]
#                         render the broker config, create the password file and the ACL
#   certs [--host NAME]... [--ip ADDR]... [--days N] [--renew]
#                         a local CA and a server certificate for this host (kept if present)
#   client-cert NAME --out DIR        a client certificate for mutual TLS, signed by the local CA
#   add-device SITE [--generate FILE] [--owner USER:GROUP]
#                         the device of site SITE (username = site id); password from stdin,
#                         or a random one written to FILE (mode 0640)
#   add-handheld NAME --site SITE     one handheld (phone, tablet): user NAME@SITE, one connection
#   add-monitor NAME (--site SITE | --all-sites)
#                         read-only user (supervisor desk, IT dashboard): NAME@SITE or NAME@all
#   remove USER | list | rebuild-acl
#
# Passwords are read from standard input (one line; twice is fine) and never appear on a command
# line or in the output. Every command is idempotent; --dry-run prints what it would do.
# Defaults: --dir /etc/mosquitto/lobbywatch, --conf /etc/mosquitto/conf.d/lobbywatch.conf.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AUTH_DIR=/etc/mosquitto/lobbywatch
CONF_FILE=/etc/mosquitto/conf.d/lobbywatch.conf
DRY_RUN=0
RELOAD=1
# Site ids as lobbywatch's config accepts them (edge/config.py ID_PATTERN).
ID_RE='^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'

die() {
    echo "broker.sh: error: $*" >&2
    exit 1
}
say() { echo "broker.sh: $*"; }

# Run a command, or print it under --dry-run.
run() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

# Like run, but the command's chatter on stderr (openssl's key progress) is shown only if it fails.
quiet() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$*"
        return 0
    fi
    local log
    log=$(mktemp)
    if ! "$@" 2>"$log"; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

# Write standard input to FILE with MODE, atomically, only if the content changed.
write_file() {
    local file=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        say "unchanged: $file"
        return 0
    fi
    if ((DRY_RUN)); then
        rm -f "$tmp"
        say "would write $file (mode $mode)"
        return 0
    fi
    mkdir -p "$(dirname "$file")"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$file"
    group_readable "$file"
    say "wrote $file"
}

# Files mosquitto reads after dropping root (on reload) must be readable by its group.
group_readable() {
    if getent group mosquitto >/dev/null 2>&1 && ((EUID == 0)); then
        chgrp mosquitto "$1"
    fi
}

setting() { # setting NAME DEFAULT: a value saved by `setup`
    local file="$AUTH_DIR/settings/$1"
    if [[ -f $file ]]; then cat "$file"; else echo "$2"; fi
}

reload_broker() {
    ((RELOAD)) || return 0
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
        run systemctl reload mosquitto
    else
        say "mosquitto is not running under systemd here: reload it to apply the change"
    fi
}

read_password() {
    local password
    if [[ -t 0 ]]; then
        read -rsp "Password for $1: " password
        echo >&2
    else
        IFS= read -r password || true
    fi
    [[ ${#password} -ge 12 ]] || die "a password of at least 12 characters is needed for $1"
    printf '%s' "$password"
}

random_password() {
    # 32 characters from the base64 alphabet, less the ones awkward in YAML and URLs.
    openssl rand -base64 48 | tr -d '\n/+=' | cut -c1-32
}

set_password() { # set_password USER PASSWORD
    if ((DRY_RUN)); then
        say "would set the password of $1 in $AUTH_DIR/passwd"
        return 0
    fi
    [[ -f $AUTH_DIR/passwd ]] || die "$AUTH_DIR/passwd is missing: run setup first"
    # mosquitto_passwd reads the password (twice) from standard input: never on a command line.
    printf '%s\n%s\n' "$2" "$2" | mosquitto_passwd "$AUTH_DIR/passwd" "$1" >/dev/null
    group_readable "$AUTH_DIR/passwd"
    say "password set for $1"
}

acl_fragment() { # acl_fragment USER: the ACL block file of USER
    echo "$AUTH_DIR/acl.d/${1//\//_}.acl"
}

cmd_rebuild_acl() {
    local prefix
    prefix=$(setting prefix lobbywatch)
    {
        sed "s|@@PREFIX@@|$prefix|g" "$HERE/acl.template"
        local fragment
        for fragment in "$AUTH_DIR"/acl.d/*.acl; do
            [[ -e $fragment ]] || continue
            echo
            cat "$fragment"
        done
    } | write_file "$AUTH_DIR/acl" 0640
}

cmd_setup() {
    local prefix=lobbywatch tls_port=8883 ws_port=8884 listen="" require=false
    while (($#)); do
        case $1 in
            --prefix) prefix=$2; shift 2 ;;
            --tls-port) tls_port=$2; shift 2 ;;
            --ws-port) ws_port=$2; shift 2 ;;
            --listen) listen=$2; shift 2 ;;
            --require-certificate) require=true; shift ;;
            *) die "setup: unknown option $1" ;;
        esac
    done
    [[ $prefix =~ ^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$ ]] || die "bad topic prefix: $prefix"
    [[ $tls_port =~ ^[0-9]+$ && $ws_port =~ ^[0-9]+$ ]] || die "ports must be numbers"
    run mkdir -p "$AUTH_DIR/acl.d" "$AUTH_DIR/settings" "$AUTH_DIR/certs"
    echo "$prefix" | write_file "$AUTH_DIR/settings/prefix" 0644
    if [[ ! -f $AUTH_DIR/passwd ]]; then
        run touch "$AUTH_DIR/passwd"
        run chmod 0640 "$AUTH_DIR/passwd"
        ((DRY_RUN)) || group_readable "$AUTH_DIR/passwd"
    fi
    sed -e "s|@@AUTH_DIR@@|$AUTH_DIR|g" \
        -e "s|@@CERT_DIR@@|$AUTH_DIR/certs|g" \
        -e "s|@@TLS_PORT@@|$tls_port|g" \
        -e "s|@@WS_PORT@@|$ws_port|g" \
        -e "s|@@LISTEN_ADDRESS@@|$listen|g" \
        -e "s|@@REQUIRE_CERTIFICATE@@|$require|g" \
        -e 's/[[:space:]]*$//' \
        "$HERE/lobbywatch.conf.template" | write_file "$CONF_FILE" 0644
    cmd_rebuild_acl
    if [[ ! -f $AUTH_DIR/certs/server.crt ]]; then
        say "no server certificate yet: run '$0 certs' or copy ca.crt, server.crt, server.key from your PKI into $AUTH_DIR/certs"
    fi
    reload_broker
}

cmd_certs() {
    local hosts=() ips=() days=825 renew=0 dir="$AUTH_DIR/certs"
    while (($#)); do
        case $1 in
            --host) hosts+=("$2"); shift 2 ;;
            --ip) ips+=("$2"); shift 2 ;;
            --days) days=$2; shift 2 ;;
            --renew) renew=1; shift ;;
            *) die "certs: unknown option $1" ;;
        esac
    done
    ((${#hosts[@]})) || hosts=("$(hostname -f 2>/dev/null || hostname)" localhost)
    ((${#ips[@]})) || ips=(127.0.0.1 ::1)
    local san="" h
    for h in "${hosts[@]}"; do [[ ,$san, == *",DNS:$h,"* ]] || san+="DNS:$h,"; done
    for h in "${ips[@]}"; do [[ ,$san, == *",IP:$h,"* ]] || san+="IP:$h,"; done
    san=${san%,}
    run mkdir -p "$dir"
    if [[ ! -f $dir/ca.key ]]; then
        # The CA key signs every certificate of this broker: keep it root-only, or move it off
        # the device after issuing the certificates you need.
        quiet openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
            -subj "/CN=lobbywatch broker CA $(hostname)" \
            -keyout "$dir/ca.key" -out "$dir/ca.crt"
        run chmod 0600 "$dir/ca.key"
    fi
    if [[ ! -f $dir/server.crt ]] || ((renew)); then
        quiet openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=${hosts[0]}" \
            -keyout "$dir/server.key" -out "$dir/server.csr"
        if ((DRY_RUN)); then
            say "would sign $dir/server.crt for $san, valid $days days"
        else
            openssl x509 -req -sha256 -days "$days" -in "$dir/server.csr" \
                -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -out "$dir/server.crt" \
                -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$san") 2>/dev/null
            rm -f "$dir/server.csr"
            chmod 0640 "$dir/server.key"
            group_readable "$dir/server.key"
            say "server certificate for $san: $dir/server.crt"
        fi
        reload_broker
    else
        say "server certificate present: $dir/server.crt (--renew to replace)"
    fi
}

cmd_client_cert() {
    local name=${1:-} out=""
    [[ -n $name ]] || die "client-cert: NAME is required"
    shift
    while (($#)); do
        case $1 in
            --out) out=$2; shift 2 ;;
            *) die "client-cert: unknown option $1" ;;
        esac
    done
    [[ -n $out ]] || die "client-cert: --out DIR is required"
    local dir="$AUTH_DIR/certs"
    [[ -f $dir/ca.key ]] || die "no local CA in $dir: run certs first"
    run mkdir -p "$out"
    quiet openssl req -newkey rsa:3072 -sha256 -nodes -subj "/CN=$name" \
        -keyout "$out/$name.key" -out "$out/$name.csr"
    if ((DRY_RUN)); then
        say "would sign $out/$name.crt"
        return 0
    fi
    openssl x509 -req -sha256 -days 825 -in "$out/$name.csr" -CA "$dir/ca.crt" \
        -CAkey "$dir/ca.key" -CAcreateserial -out "$out/$name.crt" \
        -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null
    rm -f "$out/$name.csr"
    chmod 0600 "$out/$name.key"
    say "client certificate: $out/$name.crt (key $out/$name.key)"
}

cmd_add_device() {
    local site=${1:-} generate="" owner=""
    [[ -n $site ]] || die "add-device: SITE is required"
    shift
    while (($#)); do
        case $1 in
            --generate) generate=$2; shift 2 ;;
            --owner) owner=$2; shift 2 ;;
            *) die "add-device: unknown option $1" ;;
        esac
    done
    [[ $site =~ $ID_RE ]] || die "site id $site is not valid (letters, digits, _ . -)"
    local password
    if [[ -n $generate ]]; then
        if [[ -s $generate ]]; then
            say "keeping the existing password in $generate"
            password=$(head -n1 "$generate")
        else
            password=$(random_password)
            if ((DRY_RUN)); then
                say "would write a random password to $generate (mode 0640${owner:+, owner $owner})"
            else
                (umask 027 && printf '%s\n' "$password" >"$generate")
                [[ -z $owner ]] || chown "$owner" "$generate"
                say "wrote a random password to $generate"
            fi
        fi
    else
        password=$(read_password "$site")
    fi
    set_password "$site" "$password"
    printf '# device %s: the pattern above allows it %s/%s/#\n' "$site" \
        "$(setting prefix lobbywatch)" "$site" | write_file "$(acl_fragment "$site")" 0640
    cmd_rebuild_acl
    reload_broker
}

cmd_add_handheld() {
    local name=${1:-} site=""
    [[ -n $name ]] || die "add-handheld: NAME is required"
    shift
    while (($#)); do
        case $1 in
            --site) site=$2; shift 2 ;;
            *) die "add-handheld: unknown option $1" ;;
        esac
    done
    [[ $name =~ $ID_RE ]] || die "handheld name $name is not valid (letters, digits, _ . -)"
    [[ $site =~ $ID_RE ]] || die "add-handheld: --site SITE is required (a site id)"
    local user="$name@$site" prefix
    prefix=$(setting prefix lobbywatch)
    set_password "$user" "$(read_password "$user")"
    write_file "$(acl_fragment "$user")" 0640 <<EOF
# handheld $user: reads alerts (messages and each alert's retained state), occupancy and
# availability of site $site; writes only acks
user $user
topic read $prefix/$site/alerts
topic read $prefix/$site/alerts/+/state
topic read $prefix/$site/alerts/open
topic read $prefix/$site/zone/+/occupancy
topic read $prefix/$site/availability
topic write $prefix/$site/alerts/+/ack
EOF
    cmd_rebuild_acl
    reload_broker
}

cmd_add_monitor() {
    local name=${1:-} site=""
    [[ -n $name ]] || die "add-monitor: NAME is required"
    shift
    while (($#)); do
        case $1 in
            --site) site=$2; shift 2 ;;
            --all-sites) site=all; shift ;;
            *) die "add-monitor: unknown option $1" ;;
        esac
    done
    [[ $name =~ $ID_RE ]] || die "monitor name $name is not valid (letters, digits, _ . -)"
    [[ $site == all || $site =~ $ID_RE ]] || die "add-monitor: --site SITE or --all-sites"
    local user="$name@$site" prefix topic what="site $site"
    prefix=$(setting prefix lobbywatch)
    if [[ $site == all ]]; then
        topic="$prefix/+/#" what="every site"
    else
        topic="$prefix/$site/#"
    fi
    set_password "$user" "$(read_password "$user")"
    write_file "$(acl_fragment "$user")" 0640 <<EOF
# monitor $user: reads everything of $what, writes nothing
user $user
topic read $topic
EOF
    cmd_rebuild_acl
    reload_broker
}

cmd_remove() {
    local user=${1:-}
    [[ -n $user ]] || die "remove: USER is required"
    run mosquitto_passwd -D "$AUTH_DIR/passwd" "$user"
    run rm -f "$(acl_fragment "$user")"
    cmd_rebuild_acl
    reload_broker
}

cmd_list() {
    local fragment
    for fragment in "$AUTH_DIR"/acl.d/*.acl; do
        [[ -e $fragment ]] || continue
        head -n1 "$fragment" | sed 's/^# //'
    done
}

main() {
    while (($#)); do
        case $1 in
            --dir) AUTH_DIR=$2; shift 2 ;;
            --conf) CONF_FILE=$2; shift 2 ;;
            --dry-run) DRY_RUN=1; shift ;;
            --no-reload) RELOAD=0; shift ;;
            -h | --help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
            -*) die "unknown option $1" ;;
            *) break ;;
        esac
    done
    local command=${1:-}
    [[ -n $command ]] || die "a command is required (--help lists them)"
    shift
    case $command in
        setup) cmd_setup "$@" ;;
        certs) cmd_certs "$@" ;;
        client-cert) cmd_client_cert "$@" ;;
        add-device) cmd_add_device "$@" ;;
        add-handheld) cmd_add_handheld "$@" ;;
        add-monitor) cmd_add_monitor "$@" ;;
        remove) cmd_remove "$@" ;;
        list) cmd_list ;;
        rebuild-acl) cmd_rebuild_acl ;;
        *) die "unknown command $command (--help lists them)" ;;
    esac
}

main "$@"
