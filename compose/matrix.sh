#!/usr/bin/env bash
# The compose test matrix: for each DCS, a 3-node praetor cluster in containers (PostgreSQL 15 + praetor per
# node, the DCS, HAProxy), then failure drills through HAProxy.
#
#   compose/matrix.sh [etcd|consul|zookeeper|all]    (default: all)
#
# Per DCS: build the images if needed (compose/build-images.sh), generate the node configurations from config/
# (compose/gen-config.py), `docker-compose up`, then check
#   healthy      1 leader + 2 streaming replicas
#   write-read   a row written through HAProxy's write port is read through the read port
#   kill-leader  `docker kill` of the leader's container -> a new leader serves writes through HAProxy (time printed)
#   rejoin       the killed container, started again, streams as a replica
#   switchover   `praetorctl switchover --leader L --candidate C --force` (falls back to the REST API, then to
#                the failover key in the DCS, while those do not exist) -> C leads, L streams
#   partition    `docker network disconnect` of the leader -> it demotes (read-only) and another node leads
#   reconnect    the partitioned node, reconnected, streams as a replica
# prints a result table and removes everything it created (also on failure or Ctrl-C): only the compose projects
# named praetor-matrix-<dcs>, with their containers, network and volumes.
#
# Environment: PRAETOR_MATRIX_TIMEOUT (seconds per wait, default 120), PRAETOR_MATRIX_KEEP=1 (leave the cluster up
# after the checks, for debugging; remove it with `docker-compose -p praetor-matrix-<dcs> -f compose/<dcs>.yml down -v`),
# PRAETOR_MATRIX_SWITCHOVER (auto|praetorctl|rest|dcs: how the switchover is asked for, default auto),
# PRAETOR_COMPOSE_CACHE (work dir, default target/compose-cache), PRAETOR_{ETCD,CONSUL,ZOOKEEPER}_NET (first three
# octets of each compose network, default 172.31.51/52/53).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PRAETOR_COMPOSE_CACHE:-$ROOT/target/compose-cache}"
TIMEOUT="${PRAETOR_MATRIX_TIMEOUT:-120}"
NODES=(pg0 pg1 pg2)
CHECKS=(healthy write-read kill-leader rejoin switchover partition reconnect)

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }
now_ms() { date +%s%3N; }

case "${PRAETOR_MATRIX_SWITCHOVER:-auto}" in
  auto | praetorctl | rest | dcs) ;;
  *) die "PRAETOR_MATRIX_SWITCHOVER must be auto, praetorctl, rest or dcs (got '$PRAETOR_MATRIX_SWITCHOVER')" ;;
esac
case "${1:-all}" in
  all) DCSS=(etcd consul zookeeper) ;;
  etcd | consul | zookeeper) DCSS=("$1") ;;
  *) die "usage: $0 [etcd|consul|zookeeper|all]" ;;
esac

command -v docker-compose >/dev/null || die "docker-compose is missing (Debian: apt-get install docker-compose)"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer (docker info failed)"
PY=""  # a python3 with PyYAML (the one on PATH may be a pyenv/venv one without it; Debian's has python3-yaml)
for p in python3 /usr/bin/python3; do
  command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null && { PY="$(command -v "$p")"; break; }
done
[ -n "$PY" ] || die "python3 with PyYAML is needed (Debian: apt-get install python3-yaml)"

"$ROOT/compose/build-images.sh" || die "building the images failed"

if PSQL="$(command -v psql)" || { PSQL=/usr/lib/postgresql/15/bin/psql; [ -x "$PSQL" ]; }; then
  psql_host() { timeout 20 "$PSQL" "$@"; }
else
  psql_host() { timeout 30 docker run --rm -i --network host --entrypoint psql praetor-node:latest "$@"; }
fi

RESULTS=()   # "dcs|check|result|detail"
DURATIONS=() # "dcs|seconds"
CURRENT=""   # the compose project being run (torn down by the trap)

# --- per-project helpers (use DCS, PROJECT, NET_PREFIX) -------------------------------------------------------
dc() { timeout 300 docker-compose -p "$PROJECT" -f "$ROOT/compose/$DCS.yml" "$@"; }
declare -A CIDS # service -> container id, read once after `up` (kill/start/disconnect keep the container)
load_cids() { local s; CIDS=(); for s in $(dc ps --services 2>/dev/null); do CIDS[$s]="$(dc ps -q "$s" 2>/dev/null)"; done; }
cid() { if [ -n "${CIDS[$1]:-}" ]; then echo "${CIDS[$1]}"; else dc ps -q "$1" 2>/dev/null; fi; }
node_ip() { echo "$NET_PREFIX.$((11 + ${1#pg}))"; }

# /patroni of a node, from inside its container (works while the node is cut off the network); empty if down.
patroni() {
  local c; c="$(cid "$1")"
  [ -n "$c" ] || return 1
  timeout 10 docker exec "$c" curl -s -m 2 http://127.0.0.1:8008/patroni 2>/dev/null
}
field() { # json key -> value (empty when missing)
  "$PY" -c 'import json,sys
try: print(json.loads(sys.stdin.read()).get(sys.argv[1], ""))
except Exception: print("")' "$1"
}
role() { # node -> "primary" (running), "streaming" (running replica that streams), or other/empty
  local body r s rs
  body="$(patroni "$1")" || { echo down; return; }
  r="$(field role <<<"$body")"; s="$(field state <<<"$body")"; rs="$(field replication_state <<<"$body")"
  if [ "$r" = primary ] && [ "$s" = running ]; then echo primary
  elif [ "$r" = replica ] && [ "$s" = running ] && [ "$rs" = streaming ]; then echo streaming
  else echo "${r:-?}/${s:-?}/${rs:-}"; fi
}
leaders() { local n; for n in "${NODES[@]}"; do [ "$(role "$n")" = primary ] && echo "$n"; done; }
healthy() { # 1 primary + 2 streaming replicas
  local p=0 s=0 n r
  for n in "${NODES[@]}"; do
    r="$(role "$n")"
    [ "$r" = primary ] && p=$((p + 1))
    [ "$r" = streaming ] && s=$((s + 1))
  done
  [ "$p" -eq 1 ] && [ "$s" -eq 2 ]
}
states() { local n; for n in "${NODES[@]}"; do printf '%s=%s ' "$n" "$(role "$n")"; done; }
wait_until() { # seconds description command... (bounded; returns 1 on timeout)
  local secs="$1" what="$2"; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    if [ $SECONDS -ge $deadline ]; then say "timeout (${secs}s) waiting for: $what"; return 1; fi
    sleep 0.5
  done
}
sql() { # port sql -> output (fails on error)
  psql_host "host=127.0.0.1 port=$1 user=postgres password=super-pass dbname=postgres connect_timeout=2" \
    -X -q -A -t -v ON_ERROR_STOP=1 -c "$2" 2>/dev/null
}
local_sql() { # node sql: through the node's unix socket, inside its container
  PGCONNECT_TIMEOUT=3 timeout 15 docker exec -e PGCONNECT_TIMEOUT -u postgres "$(cid "$1")" \
    psql -h /run/postgresql -X -q -A -t -c "$2" 2>/dev/null
}
ctl_list() { local n c; for n in "${NODES[@]}"; do c="$(cid "$n")"; [ -n "$c" ] &&
  timeout 20 docker exec "$c" praetorctl -c /etc/praetor/praetor.yml list 2>/dev/null && return; done; }

record() { # check result detail
  RESULTS+=("$DCS|$1|$2|$3")
  say "$DCS $1: $2 ${3:+($3)}"
}

teardown() {
  [ -n "$CURRENT" ] || return 0
  local p="$CURRENT"; CURRENT=""
  if [ -n "${PRAETOR_MATRIX_KEEP:-}" ]; then
    say "keeping $p (PRAETOR_MATRIX_KEEP): docker-compose -p $p -f compose/$DCS.yml down -v"
    return 0
  fi
  say "removing $p"
  timeout 120 docker-compose -p "$p" -f "$ROOT/compose/$DCS.yml" down -v --remove-orphans -t 5 >/dev/null 2>&1 ||
    say "warning: docker-compose down for $p failed"
}
on_exit() { teardown; }
on_signal() { say "interrupted"; teardown; exit 130; }
trap on_exit EXIT
trap on_signal INT TERM

save_logs() {
  local f="$WORK/logs.txt"
  { ctl_list; echo; timeout 60 docker-compose -p "$PROJECT" -f "$ROOT/compose/$DCS.yml" logs --no-color --tail=${PRAETOR_MATRIX_LOG_TAIL:-300}; } >"$f" 2>&1
  say "logs of the failed run: $f"
}

# --- the checks ------------------------------------------------------------------------------------------------
dcs_healthy() {
  local m
  case "$DCS" in
    etcd) for m in etcd1 etcd2 etcd3; do
            docker exec "$(cid $m)" curl -s -m 2 http://127.0.0.1:2379/health 2>/dev/null | grep -q '"health":"true"' || return 1
          done ;;
    consul) docker exec "$(cid consul)" curl -s -m 2 http://127.0.0.1:8500/v1/status/leader 2>/dev/null | grep -q . ;;
    zookeeper) docker exec "$(cid zookeeper)" bash -c 'exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && cat <&3' \
                 2>/dev/null | grep -q 'Mode: standalone' ;;
  esac
}

check_healthy() {
  local t0=$SECONDS
  if ! wait_until 90 "the DCS ($DCS) to answer" dcs_healthy; then
    record healthy FAIL "the DCS ($DCS) did not become healthy: $(dc ps 2>/dev/null | tail -n +3 | awk '{print $1, $(NF-1), $NF}' | tr '\n' ';')"
    return 1
  fi
  if wait_until $((TIMEOUT + 60)) "1 leader + 2 streaming replicas" healthy; then
    record healthy PASS "after $((SECONDS - t0))s: $(states)"
  else
    record healthy FAIL "$(states)"; return 1
  fi
}

check_write_read() {
  TOKEN="matrix-$RANDOM$RANDOM"
  if ! sql "$WPORT" "CREATE TABLE IF NOT EXISTS matrix (id serial PRIMARY KEY, note text, at timestamptz DEFAULT now());
                     INSERT INTO matrix (note) VALUES ('$TOKEN')" >/dev/null; then
    record write-read FAIL "write through HAProxy port $WPORT failed"; return 1
  fi
  read_token() { [ "$(sql "$RPORT" "SELECT count(*) FROM matrix WHERE note = '$TOKEN'")" = 1 ]; }
  if wait_until 30 "the row through the read port" read_token; then
    local where; where="$(sql "$RPORT" "SELECT pg_is_in_recovery()::text || ' on ' || host(inet_server_addr())")"
    record write-read PASS "read back through port $RPORT (in recovery: $where)"
  else
    record write-read FAIL "the row was not readable through port $RPORT"; return 1
  fi
}

write_served() { # a write through HAProxy succeeds (and records where it landed)
  WROTE_ON="$(sql "$WPORT" "INSERT INTO matrix (note) VALUES ('after-failover') RETURNING host(inet_server_addr())")" &&
    [ -n "$WROTE_ON" ]
}

check_kill_leader() {
  local old; old="$(leaders)"
  [ "$(wc -w <<<"$old")" = 1 ] || { record kill-leader FAIL "no single leader: $(states)"; return 1; }
  KILLED="$old"
  local t0; t0="$(now_ms)"
  timeout 30 docker kill "$(cid "$old")" >/dev/null || { record kill-leader FAIL "docker kill failed"; return 1; }
  if wait_until "$TIMEOUT" "a write through HAProxy after killing $old" write_served; then
    local ms=$(($(now_ms) - t0))
    local new; new="$(leaders)"
    if [ "$WROTE_ON" = "$(node_ip "$old")" ]; then
      record kill-leader FAIL "the write landed on the killed node's address"; return 1
    fi
    FAILOVER_TIMES+=("$DCS|$(awk -v m="$ms" 'BEGIN{printf "%.1f", m/1000}')")
    record kill-leader PASS "killed $old; $new serves writes after $(awk -v m="$ms" 'BEGIN{printf "%.1f", m/1000}')s"
  else
    record kill-leader FAIL "no write served within ${TIMEOUT}s: $(states)"; return 1
  fi
}

is_streaming() { [ "$(role "$1")" = streaming ]; }
rejoined() { is_streaming "$1" && healthy; }

check_rejoin() {
  local t0=$SECONDS
  timeout 60 docker start "$(cid "$KILLED")" >/dev/null 2>&1 || { record rejoin FAIL "could not start $KILLED again"; return 1; }
  if wait_until "$TIMEOUT" "$KILLED streaming as a replica" rejoined "$KILLED"; then
    record rejoin PASS "$KILLED streams again after $((SECONDS - t0))s"
  else
    record rejoin FAIL "$(states)"; return 1
  fi
}

# The failover key, written straight into the DCS as patronictl does when the leader's REST API does not answer:
# {"leader": L, "member": C} at <namespace>/<scope>/failover (config: namespace /service/, scope matrix-<dcs>).
dcs_write_failover() { # leader candidate
  local key="/service/matrix-$DCS/failover" value="{\"leader\":\"$1\",\"member\":\"$2\"}"
  case "$DCS" in
    etcd) # etcd's v3 JSON gateway: key and value base64-encoded
      docker exec "$(cid etcd1)" curl -sf -m 10 -X POST http://127.0.0.1:2379/v3/kv/put \
        -d "{\"key\":\"$(printf %s "$key" | base64 -w0)\",\"value\":\"$(printf %s "$value" | base64 -w0)\"}" ;;
    consul)
      docker exec "$(cid consul)" curl -sf -m 10 -X PUT --data-binary "$value" "http://127.0.0.1:8500/v1/kv$key" ;;
    zookeeper) # set, or create when the node does not exist yet
      docker exec "$(cid zookeeper)" praetor-node zkcli set "$key" "$value" ||
        docker exec "$(cid zookeeper)" praetor-node zkcli create "$key" "$value" ;;
  esac
}

# How the switchover is asked for (PRAETOR_MATRIX_SWITCHOVER): auto (default) = `praetorctl switchover --force` when
# praetorctl has that command and the leader's REST API serves POST /switchover (what praetorctl calls), else the REST
# API, else the failover key in the DCS; or exactly one of praetorctl | rest | dcs. Sets SWITCH_VIA; non-zero on failure.
rest_switchover_code() { # leader: the HTTP status of POST /switchover {} (400 when it exists: no leader given)
  timeout 40 docker exec "$(cid "$1")" curl -s -m 30 -o /dev/null -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' -d '{}' http://127.0.0.1:8008/switchover
}
switchover_cmd() { # leader candidate
  local leader="$1" cand="$2" mode="${PRAETOR_MATRIX_SWITCHOVER:-auto}" c code rest="not probed"; c="$(cid "$leader")"
  if [ "$mode" = auto ]; then
    code="$(rest_switchover_code "$leader")"
    rest=yes; [[ "$code" =~ ^(404|405|501)$ ]] && rest="no (POST /switchover answers $code)"
  fi
  # The help text is read whole before grep looks at it: with pipefail, `praetorctl --help | grep -q`
  # fails whenever grep exits before praetorctl has written everything (SIGPIPE).
  local help=""
  [ "$mode" = auto ] && [ "$rest" = yes ] && help="$(timeout 20 docker exec "$c" praetorctl --help 2>/dev/null)"
  if [ "$mode" = praetorctl ] || { [ "$mode" = auto ] && [ "$rest" = yes ] && grep -qw switchover <<<"$help"; }; then
    SWITCH_VIA="praetorctl switchover --force"
    timeout 60 docker exec "$c" praetorctl -c /etc/praetor/praetor.yml switchover --leader "$leader" --candidate "$cand" --force
    return
  fi
  if [ "$mode" = rest ] || { [ "$mode" = auto ] && [ "$rest" = yes ]; }; then
    SWITCH_VIA="REST POST /switchover"
    code="$(timeout 40 docker exec "$c" curl -s -m 30 -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
      -d "{\"leader\":\"$leader\",\"candidate\":\"$cand\"}" http://127.0.0.1:8008/switchover)"
    [ "$code" = 200 ] && return 0
    echo "POST /switchover answered $code"; return 1
  fi
  SWITCH_VIA="failover key written into $DCS; REST API: $rest"
  dcs_write_failover "$leader" "$cand"
}
switched() { [ "$(leaders)" = "$1" ] && healthy; }

check_switchover() {
  local old cand n; old="$(leaders)"
  for n in "${NODES[@]}"; do [ "$n" != "$old" ] && is_streaming "$n" && { cand="$n"; break; }; done
  [ -n "${cand:-}" ] || { record switchover FAIL "no streaming candidate: $(states)"; return 1; }
  local t0=$SECONDS out rc
  SWITCH_VIA=""
  switchover_cmd "$old" "$cand" >"$WORK/switchover.out" 2>&1; rc=$?
  out="$(cat "$WORK/switchover.out")"
  if [ $rc -ne 0 ]; then
    record switchover FAIL "${SWITCH_VIA:-?}: $(tr '\n' ' ' <<<"$out")"; return 1
  fi
  if wait_until "$TIMEOUT" "$cand leading, $old streaming" switched "$cand"; then
    record switchover PASS "$old -> $cand in $((SECONDS - t0))s (via $SWITCH_VIA)"
  else
    record switchover FAIL "$(states)"; return 1
  fi
}

demoted_and_replaced() { # old: another node leads and old is read-only (first times seen: T_LEAD, T_RO)
  local l ro; l="$(leaders | grep -vx "$1")"
  ro="$(local_sql "$1" 'SELECT pg_is_in_recovery()')"
  [ -n "$l" ] && [ -z "$T_LEAD" ] && T_LEAD=$((SECONDS - T_CUT))
  # Writable no more: shutting down (no answer) or in recovery.
  [ "$ro" != f ] && [ -z "$T_NOWRITE" ] && T_NOWRITE=$((SECONDS - T_CUT))
  [ "$ro" = t ] && [ -z "$T_RO" ] && T_RO=$((SECONDS - T_CUT))
  [ -n "$l" ] && [ "$ro" = t ] && NEW_LEADER="$l"
}

check_partition() {
  local old; old="$(leaders)"
  [ "$(wc -w <<<"$old")" = 1 ] || { record partition FAIL "no single leader: $(states)"; return 1; }
  CUT="$old"
  local t0=$SECONDS since; since="$(date -u +%Y-%m-%dT%H:%M:%S)"
  T_CUT=$SECONDS T_LEAD="" T_RO="" T_NOWRITE=""
  timeout 60 docker network disconnect "${NETWORK}" "$(cid "$old")" ||
    { record partition FAIL "docker network disconnect failed"; return 1; }
  if wait_until "$TIMEOUT" "$old read-only and another leader" demoted_and_replaced "$old"; then
    local served="no"
    wait_until 30 "a write through HAProxy" write_served && served="yes"
    if [ "$served" = yes ]; then
      record partition PASS "$old refuses writes after ${T_NOWRITE}s, read-only after ${T_RO}s; $NEW_LEADER leads after ${T_LEAD}s; writes served"
    else
      record partition FAIL "$NEW_LEADER leads but HAProxy serves no writes"; return 1
    fi
  else
    local ro; ro="$(local_sql "$old" 'SELECT pg_is_in_recovery()')"
    record partition FAIL "$(states); $old in recovery: ${ro:-no answer}"; return 1
  fi
  # The cut node's log over the partition, for whoever reads the run afterwards.
  timeout 30 docker logs --since "$since" "$(cid "$old")" >"$WORK/partition-$old.log" 2>&1
}

check_reconnect() {
  local t0=$SECONDS
  timeout 60 docker network connect --ip "$(node_ip "$CUT")" "${NETWORK}" "$(cid "$CUT")" ||
    { record reconnect FAIL "docker network connect failed"; return 1; }
  if wait_until "$TIMEOUT" "$CUT streaming as a replica" rejoined "$CUT"; then
    record reconnect PASS "$CUT streams again after $((SECONDS - t0))s"
  else
    record reconnect FAIL "$(states)"; return 1
  fi
}

run_dcs() {
  DCS="$1"
  PROJECT="praetor-matrix-$DCS"
  NETWORK="${PROJECT}_db"
  case "$DCS" in
    etcd) NET_PREFIX="${PRAETOR_ETCD_NET:-172.31.51}" ;;
    consul) NET_PREFIX="${PRAETOR_CONSUL_NET:-172.31.52}" ;;
    zookeeper) NET_PREFIX="${PRAETOR_ZOOKEEPER_NET:-172.31.53}" ;;
  esac
  WORK="$CACHE/work-$DCS"
  export PRAETOR_MATRIX_WORK="$WORK"
  rm -rf "$WORK" && mkdir -p "$WORK"
  "$PY" "$ROOT/compose/gen-config.py" "$DCS" "$NET_PREFIX" "$WORK" || die "generating the configurations failed"
  local t0=$SECONDS
  say "== $DCS: bringing up $PROJECT"
  # A project left over by an interrupted run of this script.
  timeout 120 docker-compose -p "$PROJECT" -f "$ROOT/compose/$DCS.yml" down -v --remove-orphans -t 5 >/dev/null 2>&1
  CURRENT="$PROJECT"
  CIDS=()
  if ! timeout 300 docker-compose -p "$PROJECT" -f "$ROOT/compose/$DCS.yml" up -d >"$WORK/up.log" 2>&1; then
    cat "$WORK/up.log" >&2
    record healthy FAIL "docker-compose up failed"
  else
    load_cids
    WPORT="$(dc port haproxy 5000 | sed 's/.*://')"
    RPORT="$(dc port haproxy 5001 | sed 's/.*://')"
    say "HAProxy: write 127.0.0.1:$WPORT, read 127.0.0.1:$RPORT, stats http://127.0.0.1:$(dc port haproxy 7000 | sed 's/.*://')/"
    local c failed=""
    for c in "${CHECKS[@]}"; do
      if [ -n "$failed" ]; then record "$c" SKIPPED "after $failed failed"; continue; fi
      "check_${c//-/_}" || failed="$c"
    done
    [ -z "$failed" ] || save_logs
    ctl_list
  fi
  teardown
  DURATIONS+=("$DCS|$((SECONDS - t0))")
}

FAILOVER_TIMES=()
for d in "${DCSS[@]}"; do run_dcs "$d"; done

echo
printf '%-10s %-12s %-8s %s\n' DCS CHECK RESULT DETAIL
printf '%-10s %-12s %-8s %s\n' ---------- ------------ -------- ------
status=0
for r in "${RESULTS[@]}"; do
  IFS='|' read -r d c res det <<<"$r"
  printf '%-10s %-12s %-8s %s\n' "$d" "$c" "$res" "$det"
  [ "$res" = FAIL ] || [ "$res" = SKIPPED ] && status=1
done
echo
for r in "${DURATIONS[@]}"; do IFS='|' read -r d s <<<"$r"; printf 'duration %-10s %ss\n' "$d" "$s"; done
for r in "${FAILOVER_TIMES[@]}"; do IFS='|' read -r d s <<<"$r"; printf 'failover %-10s %ss (docker kill of the leader -> write served through HAProxy)\n' "$d" "$s"; done
exit $status
