#!/usr/bin/env bash
# Back up RabbitMQ definitions (vhosts, users, permissions, exchanges, queues, bindings,
# policies) as JSON. Messages are not part of it: they live in the durable queues on
# the broker's volume, which the volume's own snapshots cover.
#
#   BACKUP_DIR=/backups KEEP=7 deploy/backup/rabbitmq-backup.sh
#   RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl" ... (compose)
set -euo pipefail
here=$(dirname "$0")
# shellcheck source=lib.sh
. "$here/lib.sh"

: "${BACKUP_DIR:?set BACKUP_DIR}"
: "${RABBITMQCTL:=rabbitmqctl}"
mkdir -p "$BACKUP_DIR"
out="$BACKUP_DIR/rabbitmq-$(stamp).json"
# "-": to stdout, so it also works through `docker compose exec`
$RABBITMQCTL -q export_definitions - >"$out.part"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$out.part"
mv "$out.part" "$out"
echo "$out"
prune "$BACKUP_DIR" 'rabbitmq-*.json'
