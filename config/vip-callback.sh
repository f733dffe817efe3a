#!/usr/bin/env bash
# praetor/Patroni callback that moves a virtual IP with the leader role.
# Use it as postgresql.callbacks.on_start, on_stop, on_role_change and on_restart.
# Called as: vip-callback.sh <action> <role> <scope>
# Settings (environment, or edit the defaults): VIP (address/prefix), VIP_DEV (interface).
set -euo pipefail
VIP="${VIP:-10.0.0.100/24}"
VIP_DEV="${VIP_DEV:-eth0}"
action="${1:-}"; role="${2:-}"; scope="${3:-}"

log() { logger -t "praetor-vip[$scope]" -- "$*" 2>/dev/null || echo "$*" >&2; }

has_vip() { ip -o addr show dev "$VIP_DEV" | grep -qw "inet ${VIP%/*}"; }

add_vip() {
    if ! has_vip; then
        ip addr add "$VIP" dev "$VIP_DEV"
        log "added $VIP on $VIP_DEV ($action, $role)"
    fi
    # Tell the neighbours the address moved (gratuitous ARP), if arping is installed.
    if command -v arping >/dev/null; then
        arping -q -c 3 -A -I "$VIP_DEV" "${VIP%/*}" || true
    fi
}

del_vip() {
    if has_vip; then
        ip addr del "$VIP" dev "$VIP_DEV"
        log "removed $VIP from $VIP_DEV ($action, $role)"
    fi
}

case "$action" in
    on_start|on_restart|on_role_change)
        case "$role" in
            primary|master|promoted) add_vip ;;
            *) del_vip ;;
        esac ;;
    on_stop) del_vip ;;
    *) log "ignoring unknown action '$action'" ;;
esac
