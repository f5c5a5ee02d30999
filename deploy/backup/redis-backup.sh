#!/usr/bin/env bash
# Back up Redis (job records, results, artifacts, schedules) as a consistent RDB snapshot.
#
#   REDIS_URL=redis://host:6379 BACKUP_DIR=/backups KEEP=7 deploy/backup/redis-backup.sh
#
# `redis-cli --rdb` asks the server for a snapshot over the replication protocol: a
# point-in-time copy (like BGSAVE) streamed to this host, so it works against a
# server in another container and never copies a half-written AOF.
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=lib.sh
. "$here/lib.sh"

: "${REDIS_URL:=redis://127.0.0.1:6379}"
: "${BACKUP_DIR:?set BACKUP_DIR}"
mkdir -p "$BACKUP_DIR"
out="$BACKUP_DIR/redis-$(stamp).rdb"
redis-cli -u "$REDIS_URL" --no-auth-warning --rdb "$out.part" >/dev/null
# a valid RDB starts with the magic "REDIS"
[ "$(head -c 5 "$out.part")" = "REDIS" ] || { echo "not an RDB: $out.part" >&2; exit 1; }
mv "$out.part" "$out"
echo "$out"
prune "$BACKUP_DIR" 'redis-*.rdb'
