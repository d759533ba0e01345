#!/bin/sh
# Installs (or uninstalls) Vigil on a systemd host, or into a staging root.
#
#   deploy/install.sh [--bin-dir DIR] [--only collector|agent] [--no-start]
#   deploy/install.sh --uninstall [--purge] [--only collector|agent]
#   DESTDIR=/tmp/root deploy/install.sh --bin-dir target/release
#
# The agent's /etc/vigil/agent.yml is generated for the host by
# deploy/agent-config.sh; VIGIL_REMOTE_WRITE_URL sets where it ships
# (default http://127.0.0.1:9800/api/v1/write).
#
# Without --bin-dir the binaries are built with `cargo build --release`.
# Running it twice changes nothing the second time: files are only written
# when their content differs, and configuration files in /etc/vigil are
# never overwritten once they exist (the shipped examples are always
# refreshed under /usr/share/doc/vigil/examples/ so edits can be diffed).
# With DESTDIR empty, as root, on a host where systemd runs, the services are
# enabled and started (or restarted when a binary or unit changed).
# --uninstall keeps /etc/vigil and the data under /var/lib unless --purge.
set -eu

PROG=${0##*/}
REPO=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
DESTDIR=${DESTDIR:-}
# A trailing slash would only produce `//` in messages.
DESTDIR=${DESTDIR%/}

BIN_DIR=
ONLY=
ACTION=install
PURGE=0
START=1

usage() {
    sed -n '2,19s/^# \{0,1\}//p' "$0"
}

die() {
    printf '%s: error: %s\n' "$PROG" "$*" >&2
    exit 1
}

say() {
    printf '%s: %s\n' "$PROG" "$*"
}

while [ $# -gt 0 ]; do
    case $1 in
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; BIN_DIR=$2; shift 2 ;;
        --bin-dir=*) BIN_DIR=${1#*=}; shift ;;
        --only) [ $# -ge 2 ] || die "--only needs collector or agent"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        --purge) PURGE=1; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

case $ONLY in
    '') COMPONENTS="collector agent" ;;
    collector|agent) COMPONENTS=$ONLY ;;
    *) die "--only takes collector or agent, not '$ONLY'" ;;
esac
[ "$PURGE" = 0 ] || [ "$ACTION" = uninstall ] || die "--purge only goes with --uninstall"

is_root() { [ "$(id -u)" = 0 ]; }

# Only a live install (no staging root) touches users and services.
live() { [ -z "$DESTDIR" ]; }

systemd_running() { live && is_root && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

binary_of() {
    case $1 in collector) echo vigil ;; agent) echo vigil-agent ;; esac
}

unit_of() {
    case $1 in collector) echo vigil.service ;; agent) echo vigil-agent.service ;; esac
}

# Set by install_file when it wrote something; lets us restart only changed
# services.
CHANGED=0

# install_file SRC DEST MODE: copies SRC to DEST unless DEST already has the
# same content; then makes sure the mode is MODE. Never touches mtime of an
# unchanged file, so a second run is a no-op.
install_file() {
    src=$1 dest=$2 mode=$3
    [ -f "$src" ] || die "missing source file $src"
    mkdir -p "$(dirname -- "$dest")"
    if [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        current=$(stat -c %a "$dest")
        if [ "$current" != "${mode#0}" ]; then
            chmod "$mode" "$dest"
            say "mode $mode $dest"
        fi
        return 0
    fi
    # Write beside the target and rename, so a running binary is replaced
    # atomically instead of being rewritten in place ("text file busy").
    tmp="$dest.vigil-new.$$"
    cp -- "$src" "$tmp"
    chmod "$mode" "$tmp"
    mv -f -- "$tmp" "$dest"
    CHANGED=1
    say "installed $dest"
}

# install_config SRC DEST: a configuration file is written only when absent,
# so an operator's edits survive every later run. Readable by root and the
# vigil group only: it may name credential files and receivers.
install_config() {
    src=$1 dest=$2
    if [ -e "$dest" ]; then
        if ! cmp -s "$src" "$dest"; then
            say "kept $dest (differs from the shipped example: edited)"
        fi
        return 0
    fi
    install_file "$src" "$dest" 0640
    if live && is_root && getent group vigil >/dev/null 2>&1; then
        chgrp vigil "$dest"
    fi
}

ensure_user() {
    live && is_root || return 0
    if ! getent group vigil >/dev/null 2>&1; then
        groupadd --system vigil
        say "created group vigil"
    fi
    if ! getent passwd vigil >/dev/null 2>&1; then
        useradd --system --gid vigil --home-dir /var/lib/vigil --no-create-home \
            --shell /usr/sbin/nologin --comment "Vigil monitoring" vigil
        say "created user vigil"
    fi
}

resolve_bin_dir() {
    if [ -n "$BIN_DIR" ]; then
        [ -d "$BIN_DIR" ] || die "--bin-dir $BIN_DIR is not a directory"
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust or pass --bin-dir"
    packages=
    for c in $COMPONENTS; do packages="$packages -p $(binary_of "$c")"; done
    say "building$packages (release)"
    # shellcheck disable=SC2086 # word splitting of the -p list is intended
    (cd "$REPO" && cargo build --release --locked $packages)
    BIN_DIR=${CARGO_TARGET_DIR:-$REPO/target}/release
}

do_install() {
    resolve_bin_dir
    ensure_user
    for c in $COMPONENTS; do
        bin=$(binary_of "$c")
        [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin is missing or not executable"
    done

    changed_units=
    for c in $COMPONENTS; do
        CHANGED=0
        bin=$(binary_of "$c")
        unit=$(unit_of "$c")
        install_file "$BIN_DIR/$bin" "$DESTDIR/usr/bin/$bin" 0755
        install_file "$REPO/deploy/systemd/$unit" "$DESTDIR/lib/systemd/system/$unit" 0644
        [ "$CHANGED" = 0 ] || changed_units="$changed_units $unit"
    done

    # /etc/vigil is world-listable (the units' ConfigurationDirectoryMode);
    # the files in it are not.
    mkdir -p "$DESTDIR/etc/vigil"
    chmod 0755 "$DESTDIR/etc/vigil"
    for c in $COMPONENTS; do
        case $c in
            collector)
                install_config "$REPO/deploy/vigil.example.yml" "$DESTDIR/etc/vigil/vigil.yml"
                # The example names secret files that do not exist on a fresh
                # host, and the collector refuses to start without them; the
                # default routes nowhere and needs none.
                install_config "$REPO/deploy/alerting.default.yml" "$DESTDIR/etc/vigil/alerting.yml"
                mkdir -p "$DESTDIR/etc/vigil/rules"
                chmod 0755 "$DESTDIR/etc/vigil/rules"
                # Prometheus rule files and Vigil's anomaly rule files side
                # by side; the unit loads both globs.
                for rule in "$REPO"/rules/*.rules.yml "$REPO"/rules/anomaly/*.anomaly.yml; do
                    [ -f "$rule" ] || continue
                    # Rule files hold no secrets; 0644 lets promtool and
                    # operators check them without sudo.
                    if [ -e "$DESTDIR/etc/vigil/rules/${rule##*/}" ]; then
                        install_config_kept "$rule" "$DESTDIR/etc/vigil/rules/${rule##*/}"
                    else
                        install_file "$rule" "$DESTDIR/etc/vigil/rules/${rule##*/}" 0644
                    fi
                done
                ;;
            agent)
                install_agent_config
                ;;
        esac
    done

    # Documentation, pristine examples and the Grafana files: always the
    # current version, they are not meant to be edited in place.
    doc=$DESTDIR/usr/share/doc/vigil
    install_file "$REPO/deploy/README.md" "$doc/README.md" 0644
    install_file "$REPO/deploy/vigil.example.yml" "$doc/examples/vigil.yml" 0644
    install_file "$REPO/deploy/alerting.example.yml" "$doc/examples/alerting.yml" 0644
    install_file "$REPO/deploy/agent.example.yaml" "$doc/examples/agent.yml" 0644
    # The agent's config generator, to re-create /etc/vigil/agent.yml after
    # adding PostgreSQL or Redis to the host.
    case " $COMPONENTS " in
        *" agent "*) install_file "$REPO/deploy/agent-config.sh" "$DESTDIR/usr/share/vigil/agent-config.sh" 0755 ;;
    esac
    share=$DESTDIR/usr/share/vigil/grafana
    for f in "$REPO"/dashboards/*.json; do
        [ -f "$f" ] || continue
        install_file "$f" "$share/dashboards/${f##*/}" 0644
    done
    for kind in datasources dashboards; do
        for f in "$REPO/dashboards/provisioning/$kind"/*.yml; do
            [ -f "$f" ] || continue
            install_file "$f" "$share/provisioning/$kind/${f##*/}" 0644
        done
    done

    if systemd_running; then
        systemctl daemon-reload
        for c in $COMPONENTS; do
            unit=$(unit_of "$c")
            if ! systemctl is-enabled --quiet "$unit"; then
                systemctl enable --quiet "$unit"
                say "enabled $unit"
            fi
            [ "$START" = 1 ] || continue
            if ! systemctl is-active --quiet "$unit"; then
                systemctl start "$unit"
                say "started $unit"
            else
                case " $changed_units " in
                    *" $unit "*) systemctl restart "$unit"; say "restarted $unit (new binary or unit)" ;;
                esac
            fi
        done
    elif live; then
        say "systemd is not running (or not root): services not enabled; start them with systemctl later"
    fi
}

# The agent's configuration is written for this host (deploy/agent-config.sh:
# PostgreSQL and Redis only when they answer, the collector's own /metrics
# only beside the collector), not copied from the example, whose sample
# targets would page on a fresh host. Written only when absent, like every
# configuration file.
install_agent_config() {
    dest=$DESTDIR/etc/vigil/agent.yml
    [ -e "$dest" ] && return 0
    url=${VIGIL_REMOTE_WRITE_URL:-http://127.0.0.1:9800/api/v1/write}
    set -- --remote-write "$url"
    if [ -e "$DESTDIR/usr/bin/vigil" ]; then
        # The collector listens where the agent ships to.
        hostport=${url#*://}
        hostport=${hostport%%/*}
        set -- "$@" --scrape-collector "$hostport"
    fi
    generated=$(mktemp)
    if ! "$REPO/deploy/agent-config.sh" "$@" >"$generated"; then
        rm -f "$generated"
        die "deploy/agent-config.sh failed"
    fi
    install_config "$generated" "$dest"
    rm -f "$generated"
}

# A rule file that already exists is treated like a configuration file.
install_config_kept() {
    if ! cmp -s "$1" "$2"; then
        say "kept $2 (differs from the shipped rule file: edited)"
    fi
}

remove_path() {
    if [ -e "$1" ] || [ -L "$1" ]; then
        rm -rf -- "$1"
        say "removed $1"
    fi
}

do_uninstall() {
    for c in $COMPONENTS; do
        unit=$(unit_of "$c")
        if systemd_running && [ -e "/lib/systemd/system/$unit" ]; then
            systemctl disable --now --quiet "$unit" || true
            say "stopped and disabled $unit"
        fi
        remove_path "$DESTDIR/usr/bin/$(binary_of "$c")"
        remove_path "$DESTDIR/lib/systemd/system/$unit"
    done
    if systemd_running; then
        systemctl daemon-reload
    fi

    # Shared files go only when nothing of Vigil is left.
    if [ ! -e "$DESTDIR/usr/bin/vigil" ] && [ ! -e "$DESTDIR/usr/bin/vigil-agent" ]; then
        remove_path "$DESTDIR/usr/share/doc/vigil"
        remove_path "$DESTDIR/usr/share/vigil"
    fi

    if [ "$PURGE" = 1 ]; then
        for c in $COMPONENTS; do
            case $c in
                collector)
                    remove_path "$DESTDIR/etc/vigil/vigil.yml"
                    remove_path "$DESTDIR/etc/vigil/alerting.yml"
                    remove_path "$DESTDIR/etc/vigil/rules"
                    remove_path "$DESTDIR/var/lib/vigil"
                    ;;
                agent)
                    remove_path "$DESTDIR/etc/vigil/agent.yml"
                    remove_path "$DESTDIR/var/lib/vigil-agent"
                    ;;
            esac
        done
        # Anything else an operator put in /etc/vigil stays, and with it the
        # directory and the account.
        if [ -d "$DESTDIR/etc/vigil" ] && [ -z "$(ls -A "$DESTDIR/etc/vigil")" ]; then
            remove_path "$DESTDIR/etc/vigil"
        fi
        if live && is_root && [ ! -e /usr/bin/vigil ] && [ ! -e /usr/bin/vigil-agent ] \
            && getent passwd vigil >/dev/null 2>&1; then
            userdel vigil
            if getent group vigil >/dev/null 2>&1; then
                groupdel vigil
            fi
            say "removed user vigil"
        fi
    else
        say "kept configuration in $DESTDIR/etc/vigil and data in $DESTDIR/var/lib (use --purge to remove)"
    fi
}

case $ACTION in
    install) do_install ;;
    uninstall) do_uninstall ;;
esac
