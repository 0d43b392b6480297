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
server_us, statuses = {}, {}

function init(args)
  math.randomseed(os.time() + id)
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local function events(start)
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
  end
end

function done(summary, latency, requests)
  local all, codes = {}, {}
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("server_us")) do all[#all + 1] = v end
    for k, v in pairs(thread:get("statuses")) do codes[k] = (codes[k] or 0) + v end
  end
  table.sort(all)
  local function rank(q)
    if #all == 0 then return 0 end
    return all[math.max(1, math.min(#all, math.ceil(q * #all)))]
  end
  local parts = {}
  for k, v in pairs(codes) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {"requests":%d,"duration_us":%d,"errors":{"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d},"statuses":{%s},' ..
    '"client_us":{"p50":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"server_us":{"count":%d,"p50":%d,"p95":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","),
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max,
    latency.mean, #all, rank(0.50), rank(0.95), rank(0.99), all[#all] or 0))
end
