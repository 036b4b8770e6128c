-- scripts/bench webhooks' wrk script: every request is a new delivery signed as Smokeball signs
-- one (FACTS.md): headers Timestamp (.NET ticks of the send), RequestId (new for every request)
-- and Signature = lowercase hex HMAC-SHA256(key, Timestamp|RequestId|ClientId). wrk's LuaJIT has
-- no HMAC, so SHA-256 is written here with the `bit` library and checked against FACTS.md's check
-- values before anything is sent.
--
-- Environment (not wrk's command line, which the process list shows): BENCH_WEBHOOK_KEY (the
-- subscription's key, as the sandbox holds it), BENCH_CLIENT_ID, BENCH_ACCOUNT_ID,
-- BENCH_SUBSCRIPTION_ID, BENCH_RESULT (a file the totals are written to).
local bit = require("bit")
local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit, tohex = bit.rshift, bit.lshift, bit.ror, bit.tobit, bit.tohex
local byte, char, format = string.byte, string.char, string.format

local K = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end

local function initial()
    return {
        tobit(0x6a09e667), tobit(0xbb67ae85), tobit(0x3c6ef372), tobit(0xa54ff53a),
        tobit(0x510e527f), tobit(0x9b05688c), tobit(0x1f83d9ab), tobit(0x5be0cd19),
    }
end

local w = {}
-- One 64-byte block of `s` at `at` (1-based) into the state `h`.
local function compress(h, s, at)
    for i = 0, 15 do
        local p = at + i * 4
        local b1, b2, b3, b4 = byte(s, p, p + 3)
        w[i] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
    end
    for i = 16, 63 do
        local x, y = w[i - 15], w[i - 2]
        local s0 = bxor(ror(x, 7), ror(x, 18), rshift(x, 3))
        local s1 = bxor(ror(y, 17), ror(y, 19), rshift(y, 10))
        w[i] = tobit(w[i - 16] + s0 + w[i - 7] + s1)
    end
    local a, b, c, d, e, f, g, hh = h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]
    for i = 0, 63 do
        local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
        local ch = bxor(band(e, f), band(bnot(e), g))
        local t1 = tobit(hh + S1 + ch + K[i + 1] + w[i])
        local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
        local maj = bxor(band(a, b), band(a, c), band(b, c))
        local t2 = tobit(S0 + maj)
        hh, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + t2)
    end
    h[1], h[2], h[3], h[4] = tobit(h[1] + a), tobit(h[2] + b), tobit(h[3] + c), tobit(h[4] + d)
    h[5], h[6], h[7], h[8] = tobit(h[5] + e), tobit(h[6] + f), tobit(h[7] + g), tobit(h[8] + hh)
end

-- SHA-256 of `message`, continuing from `state` after `prefixBytes` bytes (a precomputed
-- HMAC pad block), as 32 raw bytes, or as 64 lowercase hex digits with `asHex` (straight from
-- the state words: wrk shares this machine's cores with what it measures).
local function sha256(message, state, prefixBytes, asHex)
    local h = { state[1], state[2], state[3], state[4], state[5], state[6], state[7], state[8] }
    local length = (prefixBytes + #message) * 8
    local padded = message .. "\128" .. string.rep("\0", (55 - #message) % 64)
    -- The length as 64 bits, big-endian (messages here are far below 2^32 bits).
    padded = padded .. "\0\0\0\0" .. char(band(rshift(length, 24), 255), band(rshift(length, 16), 255),
        band(rshift(length, 8), 255), band(length, 255))
    for at = 1, #padded, 64 do compress(h, padded, at) end
    if asHex then
        return tohex(h[1], 8) .. tohex(h[2], 8) .. tohex(h[3], 8) .. tohex(h[4], 8) .. tohex(h[5], 8)
            .. tohex(h[6], 8) .. tohex(h[7], 8) .. tohex(h[8], 8)
    end
    local out = {}
    for i = 1, 8 do
        local v = h[i]
        out[i] = char(band(rshift(v, 24), 255), band(rshift(v, 16), 255), band(rshift(v, 8), 255), band(v, 255))
    end
    return table.concat(out)
end

local function hex(raw)
    return (raw:gsub(".", function(c) return format("%02x", byte(c)) end))
end

-- HMAC-SHA256 keyed once: the inner and outer pad blocks are compressed here, so a signature
-- costs the message's blocks and one more.
local function hmacKeyed(key)
    if #key > 64 then key = sha256(key, initial(), 0) end
    key = key .. string.rep("\0", 64 - #key)
    local ipad = key:gsub(".", function(c) return char(bxor(byte(c), 0x36)) end)
    local opad = key:gsub(".", function(c) return char(bxor(byte(c), 0x5c)) end)
    local inner, outer = initial(), initial()
    compress(inner, ipad, 1)
    compress(outer, opad, 1)
    return function(message)
        return sha256(sha256(message, inner, 64), outer, 64, true)
    end
end

local function check(got, want, what)
    if got ~= want then error("bench-webhooks.lua: " .. what .. " check failed: " .. got .. " ~= " .. want) end
end
-- FIPS 180-2's "abc", then FACTS.md's signature check values.
check(hex(sha256("abc", initial(), 0)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "SHA-256")
check(hmacKeyed("ei7641529ue420n8b9aa")("638609288928990639|e56f2c3f-b6de-4310-a7a2-c139d62f9711|lou1qnn0llav95f"),
    "58817681863148b0e624c00f3094f99e1af31cd7b99a3c2e0655d64a2764d650", "FACTS.md signature")

local function required(name)
    local value = os.getenv(name)
    if value == nil or value == "" then error("bench-webhooks.lua: " .. name .. " is not set") end
    return value
end

-- Per thread (wrk gives each its own Lua state): setup() numbers the threads, so request ids
-- never collide across them.
local threads = {}
local threadCount = 0
function setup(thread)
    threadCount = threadCount + 1
    thread:set("thread_number", threadCount)
    table.insert(threads, thread)
end

local sign, clientID, accountID, subscriptionID, nonce
-- A global: done() reads it from each thread.
sent = 0
function init(args)
    sign = hmacKeyed(required("BENCH_WEBHOOK_KEY"))
    clientID = required("BENCH_CLIENT_ID")
    accountID = required("BENCH_ACCOUNT_ID")
    subscriptionID = required("BENCH_SUBSCRIPTION_ID")
    math.randomseed(os.time() * 1000 + thread_number)
    -- Distinguishes runs (and threads) in the request ids.
    nonce = format("%08x-%04x", math.random(0, 0x7fffffff), thread_number)
end

-- .NET ticks of now, as a string: they exceed a double's exact integers, so seconds since
-- 0001-01-01 (62135596800 s before 1970) and the sub-second digits are written side by side.
-- wrk's Lua has whole seconds only; `sent` fills the sub-second digits so no two sends of a
-- thread share a Timestamp.
local function ticks()
    return format("%d%07d", os.time() + 62135596800, sent % 10000000)
end

function request()
    sent = sent + 1
    local timestamp = ticks()
    local requestID = format("%s-4000-8000-%012d", nonce, sent)
    local matterID = format("%s-4a00-8a00-%012d", nonce, sent)
    local headers = {
        ["Content-Type"] = "application/json; charset=utf-8",
        ["Timestamp"] = timestamp,
        ["RequestId"] = requestID,
        ["Signature"] = sign(timestamp .. "|" .. requestID .. "|" .. clientID),
    }
    local body = format(
        '{"accountId":"%s","subscriptionId":"%s","type":"matter.updated","source":"Smokeball",' ..
        '"payload":{"id":"%s","status":"Open"},"timestamp":%s}',
        accountID, subscriptionID, matterID, timestamp)
    return wrk.format("POST", nil, headers, body)
end

-- Totals for the script: requests sent (answered or not when wrk stopped), answered, and
-- answered with a status outside 2xx/3xx.
function done(summary, latency, requests)
    local total = 0
    for _, thread in ipairs(threads) do total = total + thread:get("sent") end
    local out = assert(io.open(required("BENCH_RESULT"), "w"))
    out:write(format("sent %d\nanswered %d\nnon_2xx %d\nsocket_errors %d\np50_us %d\np99_us %d\n", total,
        summary.requests, summary.errors.status,
        summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
        latency:percentile(50), latency:percentile(99)))
    out:close()
end
