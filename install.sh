#!/bin/sh
# Installs callbridge as a systemd service: the binary, the unit and the example
# configuration, and (as root on the real system) the `callbridge` system user. Run from
# the source tree. It never overwrites a configuration that is already there, and it does
# not start the service: edit the configuration first (see README.md, "Run it as a
# service").
#
#   ./install.sh                      # cargo install, then put everything in place
#   ./install.sh --binary PATH        # use a binary built already
#   PREFIX=/opt/callbridge ./install.sh
#   DESTDIR=/tmp/stage ./install.sh   # stage into a directory (packaging; no user created)
set -eu

PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc/callbridge}
UNITDIR=${UNITDIR:-/etc/systemd/system}
binary=

while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=${2:?--binary needs a path}; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

cd "$(dirname "$0")"
for f in Cargo.toml systemd/callbridge.service conf/callbridge.toml; do
    [ -f "$f" ] || { echo "install.sh: $f missing: run it from the callbridge source tree" >&2; exit 1; }
done

bindir="$DESTDIR$PREFIX/bin"
if [ -z "$binary" ]; then
    # --locked: the versions in Cargo.lock, as tested.
    cargo install --locked --path . --root "$DESTDIR$PREFIX"
else
    [ -x "$binary" ] || { echo "install.sh: --binary $binary is not an executable file" >&2; exit 1; }
    install -D -m 0755 "$binary" "$bindir/callbridge"
fi

# The unit names the binary by its installed path.
mkdir -p "$DESTDIR$UNITDIR"
sed -e "s|/usr/local/bin|$PREFIX/bin|g" \
    -e "s|/etc/callbridge/|$SYSCONFDIR/|g" \
    systemd/callbridge.service > "$DESTDIR$UNITDIR/callbridge.service"
chmod 0644 "$DESTDIR$UNITDIR/callbridge.service"

# The system user the unit runs as (only when installing onto this system as root).
if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ] && ! id callbridge >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/callbridge --shell /usr/sbin/nologin callbridge
fi

config="$DESTDIR$SYSCONFDIR/callbridge.toml"
mkdir -p "$DESTDIR$SYSCONFDIR"
if [ -e "$config" ]; then
    echo "kept $config (already there); the example is conf/callbridge.toml"
else
    install -m 0640 conf/callbridge.toml "$config"
    if [ -z "$DESTDIR" ] && [ "$(id -u)" -eq 0 ]; then
        chgrp callbridge "$config"
    fi
    echo "wrote $config: set the PBX, the CRM and the employees in it"
fi

echo "installed $PREFIX/bin/callbridge and $UNITDIR/callbridge.service${DESTDIR:+ under $DESTDIR}"
if [ -z "$DESTDIR" ]; then
    echo "next: edit $SYSCONFDIR/callbridge.toml, check it with"
    echo "  $PREFIX/bin/callbridge check-config --config $SYSCONFDIR/callbridge.toml"
    echo "then: systemctl daemon-reload && systemctl enable --now callbridge"
fi
