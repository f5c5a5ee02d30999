#!/usr/bin/env bash
# Restore a Redis backup into a data directory, with AOF rebuilt from it.
#
#   deploy/backup/redis-restore.sh BACKUP.rdb DATA_DIR
#
# The Redis that owns DATA_DIR must be stopped. With AOF on, Redis loads the AOF and
# ignores dump.rdb, so the restore loads the snapshot into a temporary server (AOF
# off, loopback, spare port), switches AOF on there (Redis rewrites it from memory)
# and shuts it down: DATA_DIR then holds an AOF of exactly the backup. The former
# AOF directory is kept beside it as appendonlydir.before-restore-<time>.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=lib.sh
. "$here/lib.sh"

backup=${1:?usage: redis-restore.sh BACKUP.rdb DATA_DIR}
data=${2:?usage: redis-restore.sh BACKUP.rdb DATA_DIR}
port=${RESTORE_PORT:-6399}
[ "$(head -c 5 "$backup")" = "REDIS" ] || { echo "not an RDB: $backup" >&2; exit 1; }
mkdir -p "$data"
if [ -d "$data/appendonlydir" ]; then
    mv "$data/appendonlydir" "$data/appendonlydir.before-restore-$(stamp)"
fi
cp -- "$backup" "$data/dump.rdb"

redis-server --bind 127.0.0.1 --port "$port" --dir "$data" --dbfilename dump.rdb \
    --appendonly no --save "" --daemonize no --logfile "$data/restore.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
cli() { redis-cli -h 127.0.0.1 -p "$port" "$@"; }
for _ in $(seq 1 100); do
    [ "$(cli ping 2>/dev/null)" = PONG ] && [ "$(cli info persistence | tr -d '\r' | sed -n 's/^loading://p')" = 0 ] && break
    sleep 0.1
done
[ "$(cli ping 2>/dev/null)" = PONG ] || { echo "temporary redis did not start" >&2; exit 1; }
keys=$(cli dbsize)
cli config set appendonly yes >/dev/null
for _ in $(seq 1 600); do
    info=$(cli info persistence | tr -d '\r')
    if grep -q '^aof_enabled:1' <<<"$info" && grep -q '^aof_rewrite_in_progress:0' <<<"$info" \
        && grep -q '^aof_rewrite_scheduled:0' <<<"$info" && grep -q '^aof_last_bgrewrite_status:ok' <<<"$info"; then
        break
    fi
    sleep 0.1
done
cli shutdown >/dev/null 2>&1 || true
wait "$pid" 2>/dev/null || true
trap - EXIT
[ -d "$data/appendonlydir" ] || { echo "AOF was not rebuilt; see $data/restore.log" >&2; exit 1; }
echo "restored $keys keys into $data"
