#!/usr/bin/env bash
# Restore RabbitMQ definitions from a backup (idempotent: existing ones stay).
#
#   deploy/backup/rabbitmq-restore.sh BACKUP.json
#
# rabbitmqctl 3.x reads the file itself (no stdin), so it must see the path: with
# compose, copy it in first (`docker compose cp BACKUP.json rabbitmq:/tmp/defs.json`)
# and run RABBITMQCTL="docker compose exec -T rabbitmq rabbitmqctl" with /tmp/defs.json.
set -euo pipefail
backup=${1:?usage: rabbitmq-restore.sh BACKUP.json}
: "${RABBITMQCTL:=rabbitmqctl}"
$RABBITMQCTL -q import_definitions "$backup"
echo "imported $backup"
