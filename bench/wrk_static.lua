-- wrk script for bench/envoy_bench.py: one bearer token on every request (scenarios a-e).
--
--   wrk -t2 -c16 -d10s --latency -s bench/wrk_static.lua http://127.0.0.1:PORT/httpbin/get -- TOKEN_FILE
--
-- The token is the first line of TOKEN_FILE, so it never appears on a command line. The request is built once
-- (wrk's static-request fast path: no request() function, so no Lua call per request). done() prints one
-- machine-readable line with what wrk's own --latency output lacks (p99.9) and exact figures in microseconds.

function init(args)
  local file = assert(io.open(args[1], "r"))
  local token = file:read("*l")
  file:close()
  if token and #token > 0 then
    -- wrk 4.1 builds its static request from wrk.headers after init(); older versions before it, hence both.
    wrk.headers["Authorization"] = "Bearer " .. token
    local req = wrk.format()
    wrk.request = function() return req end
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f "
      .. "non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d wrapped=0\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
