-- wrk 4.1 script of benchmarks/http_bench.py: cycle through request bodies, optionally paced to a
-- fixed request rate, and print the run's figures as one JSON line.
--
-- Arguments after "--": BODIES RATE THREADS
--   BODIES   a file with one JSON request body per line (POST), or "none" for a GET without a body
--   RATE     requests per second over all threads, or 0 for unpaced (each connection sends its next
--            request as soon as the previous response arrives)
--   THREADS  the -t value given to wrk, so each thread paces its share of RATE
-- The API token comes from the BENCH_TOKEN environment variable, so it is not on the command line.
--
-- wrk 4.1 has no fixed-rate mode, so pacing uses the delay() hook: each thread hands out send
-- slots THREADS / RATE seconds apart, and a connection whose response arrives waits for the next
-- free slot. wrk starts a request's latency clock when it writes the request, so a request that
-- waited for a free connection is not counted as late: when the server falls behind, the latency
-- is that of a closed loop, not of an open arrival process.
--
-- wrk decides after init() whether request() and delay() exist, so init() defines them only when
-- they are needed: a GET reuses one prebuilt request, and an unpaced run has no timer per request.

local ffi = require("ffi")

ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])

-- CLOCK_MONOTONIC's value in Linux's <time.h>.
local CLOCK_MONOTONIC = 1
local clock_value = ffi.new("bench_timespec")
local threads_set_up = 0

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock_value)
  return tonumber(clock_value.tv_sec) * 1000 + tonumber(clock_value.tv_nsec) / 1e6
end

local function read_bodies(path)
  local file = assert(io.open(path, "r"), "cannot open the bodies file " .. path)
  local lines = {}
  for line in file:lines() do
    if #line > 0 then
      lines[#lines + 1] = line
    end
  end
  file:close()
  assert(#lines > 0, "the bodies file " .. path .. " has no request body")
  return lines
end

local function cycling_request(bodies, first)
  local index = first
  return function()
    index = index % #bodies + 1
    return wrk.format(nil, nil, nil, bodies[index])
  end
end

local function paced_delay(interval_ms)
  local next_slot_ms = nil
  return function()
    local now = now_ms()
    -- A thread that fell behind starts again from now and drops the slots it missed, rather than
    -- sending them in a burst.
    if next_slot_ms == nil or next_slot_ms < now then
      next_slot_ms = now
    end
    local wait = next_slot_ms - now
    next_slot_ms = next_slot_ms + interval_ms
    -- wrk takes whole milliseconds; the slots stay exact, so rounding does not drift the rate.
    return math.floor(wait + 0.5)
  end
end

-- Runs in the main Lua state once per thread, before that thread's init().
function setup(thread)
  thread:set("thread_number", threads_set_up)
  threads_set_up = threads_set_up + 1
end

function init(args)
  local path = args[1] or "none"
  local rate = tonumber(args[2] or "0") or 0
  local threads = math.max(tonumber(args[3] or "1") or 1, 1)
  local token = os.getenv("BENCH_TOKEN")
  assert(token and #token > 0, "set BENCH_TOKEN to the API token")

  wrk.headers["Authorization"] = "Token " .. token
  wrk.headers["Accept"] = "application/json"
  if path == "none" then
    wrk.method = "GET"
  else
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    local bodies = read_bodies(path)
    -- Threads start a fraction of the file apart, so they do not send the same bodies in step.
    request = cycling_request(bodies, math.floor(#bodies * (thread_number or 0) / threads))
  end
  if rate > 0 then
    delay = paced_delay(1000 * threads / rate)
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency.min, latency.mean, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)
  ))
end
