#!/bin/sh
# Rebuilds t.min.js, the script EventFlow serves at /t.js, from t.js (the source) with terser,
# pinned. Run it after changing t.js: ingestion/tests/test_tracker.py checks that t.min.js
# names the source it was built from, and that it stays under 2 KB gzipped.
set -eu
cd "$(dirname "$0")"
source_hash=$(sha256sum t.js | cut -c1-16)
{
    echo "/*! EventFlow tracker, built from t.js sha256:$source_hash. No cookie, no storage: see README, Browser tracker. */"
    npx --yes terser@5.51.4 t.js --compress --mangle --comments false
} >t.min.js.tmp
mv t.min.js.tmp t.min.js
