#!/bin/sh
# The image's entrypoint (under tini): a mounted configuration file if there
# is one, else one written by `botectl config-from-env` from BOTE_*
# variables; then boted replaces this shell (exec), so tini's SIGTERM
# reaches boted directly. Arguments are passed on to boted.
set -eu
config=${BOTE_CONFIG:-/etc/bote/boted.toml}
if [ ! -f "$config" ]; then
    config=${TMPDIR:-/tmp}/boted.toml
    botectl config-from-env > "$config"
fi
exec boted --config "$config" "$@"
