#!/usr/bin/env bash
# packaging/build-deb.sh OUT.deb - build the KalshiBook .deb with dpkg-buildpackage.
#
# Called by `make deb`. Copies the source files (git's tracked and untracked,
# never build artefacts) into build/deb/src/kalshibook-VERSION/, puts
# packaging/debian/ there as debian/, builds the binary package unsigned and
# moves the .deb to OUT (build/deb/kalshibook_VERSION_ARCH.deb). Then runs
# lintian: errors fail the build, warnings are printed and kept in
# build/deb/lintian.txt.
set -euo pipefail

OUT=${1:?usage: build-deb.sh OUT.deb}
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$ROOT"

VERSION=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
ARCH=$(dpkg --print-architecture)
OUTDIR=$(dirname "$OUT")
SRC=$OUTDIR/src/kalshibook-$VERSION

rm -rf "$OUTDIR/src"
mkdir -p "$SRC"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # (A tracked file deleted in the work tree is listed but skipped.)
    git ls-files -z -co --exclude-standard -- Makefile README.md lib app db nginx static \
        packaging docs | while IFS= read -r -d '' f; do
        if [ -e "$f" ]; then cp --parents -- "$f" "$SRC/"; fi
    done
else
    cp -R --parents -t "$SRC" Makefile README.md lib app db nginx static packaging docs
    rm -f "$SRC/lib/libkb.a" "$SRC/app/kalshibook-fcgi" "$SRC/app/kbctl"
fi
cp -R packaging/debian "$SRC/debian"
# The Redoc bundle for /docs is built from npm by `make static` (a
# prerequisite of the .deb, not tracked): ship the built copy.
install -D -m 0644 static/docs/redoc.standalone.js "$SRC/static/docs/redoc.standalone.js"

echo "build-deb: dpkg-buildpackage in $SRC"
(cd "$SRC" && dpkg-buildpackage -b -us -uc -J"$(nproc)") >"$OUTDIR/build.log" 2>&1 || {
    tail -n 60 "$OUTDIR/build.log" >&2
    echo "build-deb: dpkg-buildpackage failed (log: $OUTDIR/build.log)" >&2
    exit 1
}
mv -f "$OUTDIR/src/kalshibook_${VERSION}_${ARCH}.deb" "$OUT"

# lintian exits non-zero on errors only (its default --fail-on=error).
rc=0
lintian --info --display-info --pedantic "$OUT" >"$OUTDIR/lintian.txt" 2>&1 || rc=$?
grep -E '^[EWIP]:' "$OUTDIR/lintian.txt" | grep -v '^N:' || true
if [ "$rc" -ne 0 ]; then
    echo "build-deb: lintian reports errors (above; full text in $OUTDIR/lintian.txt)" >&2
    rm -f "$OUT"
    exit 1
fi
rm -rf "$OUTDIR/src"
echo "build-deb: $OUT"
