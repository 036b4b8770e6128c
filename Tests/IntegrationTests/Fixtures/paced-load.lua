-- DeployTests' load generator (wrk -s): sends at a fixed rate, LOAD_RATE requests per second per
-- wrk thread, on a schedule rather than as fast as the route answers, so each route gets the
-- issue's rate and no more (two routes share the machine with the rest of the suite). When the
-- route falls behind by more than 100 ms the schedule restarts from now instead of bursting to
-- catch up. LOAD_SCRIPT (optional) is a request script run first (scripts/lib/bench-webhooks.lua:
-- signed deliveries); LOAD_BEARER_TOKEN (optional) goes in an Authorization header. Both come
-- from the environment, never wrk's command line.
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } paced_load_timespec;
int clock_gettime(int clock, paced_load_timespec *now);
]]

local script = os.getenv("LOAD_SCRIPT")
if script ~= nil and script ~= "" then dofile(script) end
local bearer = os.getenv("LOAD_BEARER_TOKEN")
if bearer ~= nil and bearer ~= "" then wrk.headers["Authorization"] = "Bearer " .. bearer end

local rate = tonumber(os.getenv("LOAD_RATE") or "")
if rate == nil or rate <= 0 then error("paced-load.lua: LOAD_RATE is not a positive number") end
local interval = 1000 / rate

local now = ffi.new("paced_load_timespec")
local function milliseconds()
    ffi.C.clock_gettime(1, now) -- CLOCK_MONOTONIC
    return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
end

-- wrk asks before each request of each connection how long to wait: the next free slot of the
-- thread's schedule.
local slot = nil
function delay()
    local at = milliseconds()
    if slot == nil or slot < at - 100 then slot = at end
    local wait = slot - at
    slot = slot + interval
    if wait < 0 then return 0 end
    return wait
end
