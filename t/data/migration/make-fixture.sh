#!/usr/bin/env bash
# make-fixture.sh OLD_TREE - regenerate t/data/migration/ from the integer-cents code.
#
# OLD_TREE is a checkout of the last commit that stored integer cents and whole
# contracts (7c95333, before migrations 0012-0014), built with
# `make VARIANT=release programs`. The script starts that tree's stack in a temp
# dir, imports a small `kbctl demo-data` set with that tree's kbctl, and writes
#   old-demo.sql       the market tables as that code stored them (pg_dump --data-only,
#                      rows loaded through the partition roots), for migrations 0001-0011;
#   old-answers.jsonl  that server's answers to a fixed list of data requests
#                      (make-fixture.py), request_id and response_time removed;
#   demo-args          the demo-data arguments and the md5 of the file they produce.
# test_data_migration loads old-demo.sql into a database migrated to 0011, migrates it
# to the head and requires the same answers.
set -euo pipefail

OLD=$(cd "${1:?usage: make-fixture.sh OLD_TREE}" && pwd -P)
HERE=$(cd "$(dirname "$0")" && pwd -P)
ARGS="--markets 4 --days 1 --snapshot-minutes 180 --deltas-per-hour 12 --trades-per-hour 3 --end 2026-01-15T00:00:00Z"
STACK=$(mktemp -d /tmp/kbfixture.XXXXXX)
trap '"$OLD/t/stack.sh" stop "$STACK" >/dev/null 2>&1 || true; rm -rf "$STACK"' EXIT

KB_BIN_DIR="$OLD/app" "$OLD/t/stack.sh" start "$STACK"
set -a
# shellcheck disable=SC1091
. "$STACK/run.env"
set +a
# shellcheck disable=SC2086
"$OLD/app/kbctl" demo-data $ARGS --out "$STACK/demo.jsonl"
(cd "$OLD" && KB_DATABASE_URL="$KB_DATABASE_URL" ./app/kbctl import --quiet --checkpoint-every 10 \
    "$STACK/demo.jsonl")
printf '%s\n%s\n' "$ARGS" "$(md5sum <"$STACK/demo.jsonl" | cut -d' ' -f1)" >"$HERE/demo-args"
python3 "$HERE/make-fixture.py" "$STACK/demo.jsonl" >"$HERE/old-answers.jsonl"
pg_dump --data-only --load-via-partition-root --no-owner --no-privileges \
    -t series -t events -t markets -t market_stats -t settlements -t 'snapshots*' \
    -t 'deltas*' -t 'trades*' -t book_checkpoints \
    -t snapshots_id_seq -t deltas_id_seq -t trades_id_seq "$KB_DATABASE_URL" |
    grep -v '^SET \|^SELECT pg_catalog.set_config\|^--' | cat -s >"$HERE/old-demo.sql"
wc -c "$HERE"/old-demo.sql "$HERE"/old-answers.jsonl
