#!/bin/sh
# The official images' entrypoint, as far as compose relies on it: run the server as its
# own user (the official ones drop root with gosu), anything else as given.
set -e
case "$1" in
    rabbitmq-server)
        chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq
        HOME=/var/lib/rabbitmq exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "$@" ;;
    redis-server)
        chown -R redis:redis /data
        exec setpriv --reuid=redis --regid=redis --init-groups "$@" ;;
esac
exec "$@"
