-- post.lua: wrk script for metered JSON POST rows (bench.sh): body from $BENCH_BODY.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
