# Shared by the backup scripts: timestamps and retention.
# KEEP (default 7): how many backups of a kind stay in BACKUP_DIR; older ones are deleted.

stamp() { date -u +%Y%m%dT%H%M%SZ; }

# prune DIR GLOB: keep the newest $KEEP files matching GLOB (names sort by time).
prune() {
    local dir=$1 glob=$2 keep=${KEEP:-7}
    case $keep in ''|*[!0-9]*) echo "KEEP must be a number" >&2; return 2;; esac
    # shellcheck disable=SC2012
    ls -1 "$dir"/$glob 2>/dev/null | sort -r | tail -n +"$((keep + 1))" | while read -r old; do
        rm -f -- "$old" && echo "pruned $old"
    done
}
