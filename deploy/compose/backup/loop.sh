#!/bin/bash
# Back up Redis and RabbitMQ's definitions now and then every BACKUP_INTERVAL seconds
# (default a day), keeping KEEP of each (deploy/backup/lib.sh). Passwords from secrets:
#   REDIS_PASSWORD_FILE  -> REDIS_URL=redis://default:<password>@$REDIS_HOST:6379
#                           (redis-cli -u sends an empty user name as a user: "default")
#   RABBITMQ_PASS_FILE   -> the management API's basic auth (rabbitmqctl-http)
set -uo pipefail
here=$(dirname "$0")
interval=${BACKUP_INTERVAL:-86400}
redis_url() { echo "redis://default:$(cat "$REDIS_PASSWORD_FILE")@${REDIS_HOST:-redis}:6379"; }
trap 'exit 0' TERM INT
while :; do
    REDIS_URL=$(redis_url) "$here/redis-backup.sh" || echo "backup: redis backup failed" >&2
    "$here/rabbitmq-backup.sh" || echo "backup: rabbitmq backup failed" >&2
    sleep "$interval" & wait $!
done
