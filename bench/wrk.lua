-- wrk script for bench/run.sh. Settings come from the environment:
--   BENCH_KEY     X-API-KEY header (none when unset)
--   BENCH_METHOD  GET (default) or POST
--   BENCH_BODY    request body, for POST
--   BENCH_LIMIT   stop each thread after this many answers (default: run
--                 for wrk's -d duration)
-- done() prints one machine-readable RESULT line with throughput, latency
-- percentiles and error counts; run.sh parses it.

local key = os.getenv("BENCH_KEY")
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
if key then
  wrk.headers["X-API-KEY"] = key
end

local limit = tonumber(os.getenv("BENCH_LIMIT") or "")
if limit then
  -- Defining response() makes wrk hand every answer to Lua, which costs
  -- throughput, so it exists only when a limit is asked for.
  local seen = 0
  response = function(status, headers, body)
    seen = seen + 1
    if seen >= limit then
      wrk.thread:stop()
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests,
    summary.duration / 1e6,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000,
    latency:percentile(90) / 1000,
    latency:percentile(99) / 1000,
    latency.max / 1000,
    e.status, e.connect, e.read, e.write, e.timeout))
end
