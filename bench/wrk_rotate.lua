-- wrk script for bench/envoy_bench.py: a different bearer token on every request (scenario f, cache misses).
--
--   wrk -t2 -c16 -d10s --latency -s bench/wrk_rotate.lua http://127.0.0.1:PORT/httpbin/get -- TOKEN_FILE THREADS
--
-- TOKEN_FILE holds one token a line; THREADS must equal wrk's -t. Thread k (1-based) takes lines k, k+THREADS,
-- k+2*THREADS, ... so no two threads send the same token. A thread that runs out starts its slice again (those
-- requests are cache hits): done() reports how many requests did so as "wrapped", and the benchmark flags it.

local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

function init(args)
  local count = tonumber(args[2]) or 1
  tokens = {}
  local line_no = 0
  for line in io.lines(args[1]) do
    if (line_no % count) == (id - 1) and #line > 0 then
      table.insert(tokens, "Bearer " .. line)
    end
    line_no = line_no + 1
  end
  assert(#tokens > 0, "no tokens for thread " .. id)
  position = 0
  wrapped = 0
  cycled = false
end

function request()
  position = position + 1
  if position > #tokens then
    position = 1
    cycled = true
  end
  if cycled then
    wrapped = wrapped + 1
  end
  return wrk.format(nil, nil, {Authorization = tokens[position]})
end

function done(summary, latency, requests)
  local total_wrapped = 0
  for _, thread in ipairs(threads) do
    total_wrapped = total_wrapped + (thread:get("wrapped") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d mean_us=%.1f "
      .. "non2xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d wrapped=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max, latency.mean, e.status, e.connect, e.read, e.write, e.timeout,
    total_wrapped))
end
