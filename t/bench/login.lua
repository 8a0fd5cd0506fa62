-- wrk script for the POST /auth/login row of t/bench/bench.sh: a JSON body
-- with the bench user's credentials (BENCH_LOGIN_BODY, set by bench.sh).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_LOGIN_BODY")
