#!/bin/sh
# RabbitMQ's password from a compose secret. The official 4.x image exits when
# RABBITMQ_DEFAULT_PASS_FILE is set (the *_FILE variables were removed), so this wrapper
# reads the secret and writes the default user into a conf.d file that only the broker's
# user can read; then the image's own entrypoint runs as usual. The password never
# appears in the environment, `docker inspect` or the process list.
#   COLLECTQ_RABBITMQ_USER       the user (default collectq)
#   COLLECTQ_RABBITMQ_PASS_FILE  the secret file (default /run/secrets/rabbitmq_password)
set -eu
user=${COLLECTQ_RABBITMQ_USER:-collectq}
file=${COLLECTQ_RABBITMQ_PASS_FILE:-/run/secrets/rabbitmq_password}
conf=/etc/rabbitmq/conf.d/90-collectq-default-user.conf
pass=$(cat "$file")
case "$pass" in
    ''|*[[:space:]#]*) echo "collectq: $file: empty, or with a blank or '#' (rabbitmq.conf syntax)" >&2; exit 1 ;;
esac
umask 077
mkdir -p /etc/rabbitmq/conf.d
printf 'default_user = %s\ndefault_pass = %s\n' "$user" "$pass" >"$conf"
chown rabbitmq:rabbitmq "$conf" 2>/dev/null || true
exec docker-entrypoint.sh "$@"
