-- The max-throughput batch for wrk (a load generator in C, far leaner than Locust):
-- the same 20-event batch as visitors.throughput_body, a new visitor every 50 batches,
-- and the server-side latency read from each answer's latency_us.
-- Used by `./build.sh loadtest USERS SECONDS --scenario throughput --generator wrk`.
local T0 = 1764201600000
local thread_no = 0
local threads = {}

function setup(thread)
  thread_no = thread_no + 1
  thread:set("id", thread_no)
  table.insert(threads, thread)
end

seq, visitor = 0, 0  -- globals: done() reads them with thread:get
server_us, component_us, statuses = {}, {}, {}
late, late_us = 0, 0  -- paced runs: sends that missed their slot, and by how much in all

-- Paced (open-loop) runs: with WRK_RATE=N in the environment, N requests/s in all, on a
-- fixed schedule: each request takes the next slot (1/N s apart) whatever the answers'
-- latency, so a slow answer shows as latency, not as a lower offered rate. wrk delays in
-- whole milliseconds: a request leaves at most 1 ms before its slot. A send after its slot
-- (every connection was still waiting for an answer) is counted in `late`. Without
-- WRK_RATE no delay() is defined: wrk then sends each request as the last one is answered.
local rate = tonumber(os.getenv("WRK_RATE") or "")

function init(args)
  math.randomseed(os.time() + id)
end

if rate and rate > 0 then
  local ffi = require("ffi")
  ffi.cdef [[
    typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
    int clock_gettime(int clock, wrk_timespec *ts);
  ]]
  local clock = ffi.new("wrk_timespec")
  local function now_us()
    ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
    return tonumber(clock.tv_sec) * 1e6 + tonumber(clock.tv_nsec) / 1e3
  end
  local interval_us, next_slot = 1e6 / rate, nil

  function delay()
    local now = now_us()
    next_slot = (next_slot or now) + interval_us
    local wait = next_slot - now
    if wait < 0 then
      late, late_us = late + 1, late_us - wait
      return 0
    end
    return math.floor(wait / 1000)
  end
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local function build_events(start)
  local out = {}
  for i = 0, 19 do
    local ts = start + i * 50
    local k = i % 5
    if k < 2 then
      out[#out + 1] = string.format('{"type":"scroll","ts_ms":%d,"depth":%.2f,"y":%d}',
        ts, math.min(1.0, 0.04 * i), 40 * i)
    elseif k == 2 then
      out[#out + 1] = string.format('{"type":"mousemove","ts_ms":%d,"x":%d,"y":%d}',
        ts, 10 * i, 5 * i)
    elseif k == 3 and i < 10 then
      out[#out + 1] = string.format(
        '{"type":"hover","ts_ms":%d,"target":"#cta-1","duration_ms":120}', ts)
    elseif k == 3 then
      out[#out + 1] = string.format('{"type":"click","ts_ms":%d,"target":"#cta-1"}', ts)
    else
      out[#out + 1] = string.format('{"type":"custom","ts_ms":%d,"name":"evt_1"}', ts)
    end
  end
  return table.concat(out, ",")
end

-- A batch's events depend only on its place in the visitor's 50 (`seq`): built once each,
-- so the generator spends its time on requests, not on formatting.
local event_cache = {}
local function events(start)
  local text = event_cache[start]
  if not text then
    text = build_events(start)
    event_cache[start] = text
  end
  return text
end

function request()
  seq = seq + 1
  if seq > 50 then
    seq, visitor = 1, visitor + 1
  end
  -- wrk pipelines nothing: one request per connection at a time, so interleaved sessions
  -- per connection keep each session's batches in order.
  local start = T0 + seq * 1000
  local body = string.format(
    '{"session_id":"w%d-%d-%d","now_ms":%d,"context":{"url":"/pricing","device":"desktop",' ..
    '"local_hour":14,"country":"DE","referrer":"https://www.google.com/"},"events":[%s]}',
    id, visitor, math.random(1, 16), start + 1000, events(start))
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  local us = body:match('"latency_us":(%d+)')
  if us then
    server_us[#server_us + 1] = tonumber(us)
    local inner = body:match('"component_us":(%d+)')
    if inner then component_us[#component_us + 1] = tonumber(inner) end
  end
end

function done(summary, latency, requests)
  local all, inner, codes, n_late, n_late_us = {}, {}, {}, 0, 0
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("server_us")) do all[#all + 1] = v end
    for _, v in ipairs(thread:get("component_us")) do inner[#inner + 1] = v end
    for k, v in pairs(thread:get("statuses")) do codes[k] = (codes[k] or 0) + v end
    n_late = n_late + thread:get("late")
    n_late_us = n_late_us + thread:get("late_us")
  end
  table.sort(all)
  table.sort(inner)
  local function rank(q, values)
    values = values or all
    if #values == 0 then return 0 end
    return values[math.max(1, math.min(#values, math.ceil(q * #values)))]
  end
  local parts = {}
  for k, v in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"statuses":{%s},' ..
    '"client_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"server_us":{"count":%d,"p50":%d,"p95":%d,"p99":%d,"max":%d},' ..
    '"component_us":{"count":%d,"p50":%d,"p95":%d,"p99":%d,"max":%d},' ..
    '"late_sends":%d,"late_ms_mean":%.2f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","),
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean, #all, rank(0.50), rank(0.95), rank(0.99), all[#all] or 0,
    #inner, rank(0.50, inner), rank(0.95, inner), rank(0.99, inner), inner[#inner] or 0,
    n_late, n_late > 0 and n_late_us / n_late / 1000 or 0))
end
