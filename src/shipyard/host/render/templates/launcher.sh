#!/bin/sh
# Managed by shipyard. Usage: shipyard-exec ENV_FILE DIR COMMAND [ARG...]
# Loads the app's environment (kept in a 0600 file, never on a command line), then runs COMMAND in DIR.
set -e
env_file=$1
dir=$2
shift 2
set -a
. "$env_file"
set +a
cd "$dir"
exec "$@"
