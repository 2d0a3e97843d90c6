/**
 * The Lua scripts of the Redis store: one per state transition, each atomic on the server.
 *
 * Layout. A record of key `k` is two keys that share a Cluster hash tag, so every script runs
 * unchanged on Redis Cluster (both keys hash to one slot):
 *
 *   <prefix>{k}     a string: one header line, the fingerprint line, then the payload
 *                   "<status> <token> <attempts> <leaseUntil> <expiresAt> <createdAt> <updatedAt> <hasSteps>\n<fingerprint>\n<result or error>"
 *   <prefix>{k}:s   a hash of step name -> step result (only once a step was saved)
 *
 * (`k` is escaped so that it never contains `}`: see record-text.ts.) One string rather than
 * a hash of fields, because a replay is then one GET whose value goes back as it is, and a
 * write one SET with its expiry: measured, a replay costs the server less than half the CPU of
 * HGETALL and re-encoding the fields.
 *
 * Numbers are decimal integers, printed with `%d` (Redis' Lua 5.1 formats it from a C `long`:
 * exact for every integer a double holds, and measured at half the server CPU of `%.0f` or
 * `tostring`). Every time is `TIME` on the server (Redis 7 replicates script effects,
 * so a script may read the clock before writing). A record is dead from `expiresAt` on (begin
 * checks it); native expiry evicts both keys `grace` ms later (`PXAT`), so `get` and
 * `purgeExpired` still see a record that just expired, and a new operation on the key
 * continues its token sequence.
 */

/** Shared helpers, prepended to every script. */
const PRELUDE = `
local function server_time()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end
local function num(n)
  return string.format('%d', n)
end
local CORRUPT = 'REPROCESS_CORRUPT the record is not a reprocess record (unreadable header)'
-- Numbers past 2^53 - 1 are corrupt, as the client reads them: Lua holds them as doubles,
-- inexactly, and %d would write them back as a wrong (even negative) integer.
local MAX_SAFE = 9007199254740991
local function safe(...)
  for i = 1, select('#', ...) do
    if tonumber((select(i, ...))) > MAX_SAFE then return false end
  end
  return true
end
local function parse(v)
  local st, tok, att, lu, exp, ca, ua, hs, fp = string.match(v,
    '^([%a_]+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) ([01])\\n([^\\n]*)\\n')
  if not st or not safe(tok, att, lu, exp, ca, ua) then return nil end
  return { st = st, tok = tonumber(tok), att = tonumber(att), lu = tonumber(lu),
    exp = tonumber(exp), ca = ca, ua = ua, hs = hs, fp = fp }
end
local function header(r)
  return r.st .. ' ' .. num(r.tok) .. ' ' .. num(r.att) .. ' ' .. num(r.lu) .. ' ' ..
    num(r.exp) .. ' ' .. r.ca .. ' ' .. r.ua .. ' ' .. r.hs .. '\\n' .. r.fp .. '\\n'
end
local function steps_json(hs, sk)
  if hs ~= '1' then return '[]' end
  local flat = redis.call('HGETALL', sk)
  -- cjson writes an empty table as {}, so the empty list is spelled out.
  if #flat == 0 then return '[]' end
  return cjson.encode(flat)
end
-- The reply of one call of a batch: its result, or 'x<error message>' (a script error, or an
-- error of a Redis command it ran, e.g. WRONGTYPE or OOM) for that call alone.
local function outcome(ok, res)
  if ok and type(res) ~= 'table' then return res end
  if type(res) == 'table' and res.err then return 'x' .. res.err end
  return 'x' .. tostring(res)
end
`;

/**
 * The fence of every write after begin: the record holds `token` and is in progress. Expiry is
 * not checked: a holder whose record outlived its TTL (nobody took it over, or the token would
 * differ) may still record its outcome rather than lose the result of an effect that happened.
 * Once Redis has evicted the record (after the grace period), there is nothing to fence against.
 * Returns the parsed record, or nil (lease lost), or false (corrupt).
 */
const FENCE = `
local function held(token)
  local v = redis.call('GET', KEYS[1])
  if not v then return nil end
  local r = parse(v)
  if not r then return false end
  if r.tok ~= tonumber(token) or r.st ~= 'in_progress' then return nil end
  return r
end
-- Writes the record's header back; when exp is later than its expiry, the expiry moves there
-- and both keys are evicted natively grace ms after it, else their eviction stays as it is.
local function rewrite(r, exp, grace)
  if exp > r.exp then
    r.exp = exp
    local evict = num(r.exp + grace)
    redis.call('SET', KEYS[1], header(r), 'PXAT', evict)
    if r.hs == '1' then redis.call('PEXPIREAT', KEYS[2], evict) end
  else
    redis.call('SET', KEYS[1], header(r), 'KEEPTTL')
  end
end
`;

/**
 * begin on one record, as a function of its keys and arguments, shared by the single-key
 * script and the batch. Returns the reply string, or an error reply table (corrupt record).
 */
const BEGIN_ONE = `
-- Races closed: two workers can never both see "no record" or "lease ended", because the read
-- and the claim are one script; the token is max(previous + 1, server time in microseconds), so
-- it grows even when the previous record is gone (expired or deleted): the counter cannot
-- restart, and begin, complete, delete and begin again cannot fit in one microsecond.
-- (One string.format for the numbers of a header, cheaper than one call per number. The
-- fingerprint is appended, never formatted: %s would stop at a NUL byte.)
local function claim_new(rk, fp, token, now, leaseUntil, exp, grace)
  redis.call('SET', rk,
    string.format('in_progress %d 1 %d %d %d %d 0\\n', token, leaseUntil, exp, now, now)
      .. fp .. '\\n',
    'PXAT', string.format('%d', exp + grace))
  return string.format('a %d %d 1 0 []', token, leaseUntil)
end

local function begin_one(rk, sk, fp, lease, ttl, grace, now, floor)
  local leaseUntil = now + lease
  local v = redis.call('GET', rk)
  -- No record: a new claim. A steps hash left behind (its record removed by hand or by an
  -- eviction policy) is ignored, since the new record says it has none (hasSteps 0), and is
  -- removed by the first saveStep.
  if not v then
    return claim_new(rk, fp, floor, now, leaseUntil, now + math.max(ttl, lease), grace)
  end
  -- A replay reads five header fields only; the whole header is parsed when it is rewritten.
  local st, tok, lu, exp, hs = string.match(v,
    '^([%a_]+) (%d+) %d+ (%d+) (%d+) %d+ %d+ ([01])\\n')
  if not st or not safe(tok, lu, exp) then return redis.error_reply(CORRUPT) end
  exp = tonumber(exp)
  if exp <= now then
    -- Expired, in its grace period: a new operation; only the token sequence carries on.
    redis.call('DEL', rk, sk)
    return claim_new(rk, fp, math.max(tonumber(tok) + 1, floor), now, leaseUntil,
      now + math.max(ttl, lease), grace)
  end
  if st == 'in_progress' and tonumber(lu) <= now then
    local r = parse(v)
    if not r then return redis.error_reply(CORRUPT) end
    if r.fp == fp then
      -- The lease ended (crash, stall or release): the same operation resumes with its steps
      -- and its expiry, moved on only as far as the new lease needs.
      local token = math.max(r.tok + 1, floor)
      r.tok, r.att, r.lu, r.ua = token, r.att + 1, leaseUntil, num(now)
      r.exp = math.max(r.exp, leaseUntil)
      redis.call('SET', rk, header(r), 'PXAT', num(r.exp + grace))
      if r.hs == '1' then redis.call('PEXPIREAT', sk, num(r.exp + grace)) end
      return 'a ' .. num(token) .. ' ' .. num(leaseUntil) .. ' ' .. num(r.att) .. ' 1 ' ..
        steps_json(r.hs, sk)
    end
  end
  -- Replays, a live lease, or another fingerprint (the caller decides: reuse error). Without
  -- steps, the record string goes back as it is (no copy into a longer reply).
  -- (Only for the three statuses, so that any other reply starts with 'e'.)
  if hs == '0' and (st == 'completed' or st == 'failed' or st == 'in_progress') then return v end
  return 'e' .. steps_json(hs, sk) .. '\\n' .. v
end
`;

const BEGIN = `
-- begin: claims a key, or returns the record that stands in the way, in one step.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- ARGV[1]  fingerprint (escaped: no newline)
-- ARGV[2]  lease (ms)                ARGV[3]  ttl (ms)
-- ARGV[4]  grace (ms): both keys are evicted natively at expiresAt + grace
-- Result   one string (a client decodes one string far faster than a nested array):
--          'a <token> <leaseUntil> <attempts> <takeover 1|0> <JSON [stepName, result, ...]>'
--          'e<JSON [stepName, result, ...]>\\n<the record string>'  (a replay in this round trip)
--          '<the record string>' as it is, when the record has no steps (it starts with its
--          status: 'c', 'f' or 'i', never 'a' or 'e')
-- Error    'REPROCESS_CORRUPT ...' when the stored record cannot be read.
${PRELUDE}${BEGIN_ONE}
local now, floor = server_time()
return begin_one(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4]), now, floor)
`;

const BEGIN_MANY = `
-- beginMany: begin on n distinct records in one call (a standalone server only: the keys are
-- in many slots). Each record is decided exactly as by begin, one after the other, at one
-- server time; one record's error is its own reply and the others go on.
-- KEYS     record 1, its steps 1, record 2, its steps 2, ... (2n keys, n distinct records)
-- ARGV[1]  grace (ms)
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]   fingerprint, lease (ms) and ttl (ms) of record i
-- Result   an array of n strings: begin's result of record i, or 'x<error message>'
${PRELUDE}${BEGIN_ONE}
local now, floor = server_time()
local grace = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local a = 3 * i - 1
  out[i] = outcome(pcall(begin_one, KEYS[2 * i - 1], KEYS[2 * i], ARGV[a], tonumber(ARGV[a + 1]),
    tonumber(ARGV[a + 2]), grace, now, floor))
end
return out
`;

/**
 * complete or fail on one record (they differ only in the status written), as a function
 * shared by the single-key script and the batch. Returns 'ok', 'lease_lost' or an error reply.
 */
function finishOne(status: 'completed' | 'failed'): string {
  return `
-- Race closed: a worker whose lease was taken over (stale token) cannot overwrite the outcome,
-- and a finished record never changes.
local function finish_one(rk, sk, token, payload, ttl, grace, now)
  local v = redis.call('GET', rk)
  if not v then return 'lease_lost' end
  -- Only the fields the new header keeps; the fence is the token and 'in_progress'.
  local tok, att, ca, hs, fp = string.match(v,
    '^in_progress (%d+) (%d+) %d+ %d+ (%d+) %d+ ([01])\\n([^\\n]*)\\n')
  if not tok then
    if not string.match(v, '^[%a_]+ %d+ %d+ %d+ %d+ %d+ %d+ [01]\\n') then
      return redis.error_reply(CORRUPT)
    end
    return 'lease_lost'
  end
  -- Both are canonical decimals (written by this script set, and String(token) on the client).
  if tok ~= token then return 'lease_lost' end
  local exp = now + ttl
  local evict = string.format('%d', exp + grace)
  redis.call('SET', rk,
    string.format('${status} %s %s 0 %d %s %d %s\\n', tok, att, exp, ca, now, hs) .. fp ..
      '\\n' .. payload,
    'PXAT', evict)
  if hs == '1' then redis.call('PEXPIREAT', sk, evict) end
  return 'ok'
end
`;
}

function finishScript(name: 'complete' | 'fail', status: 'completed' | 'failed'): string {
  return `
-- ${name}: ends the operation as '${status}', only under the current token.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- ARGV[1]  token
-- ARGV[2]  encoded ${name === 'complete' ? 'result' : 'error'} (opaque, any bytes)
-- ARGV[3]  ttl (ms), counted from now
-- ARGV[4]  grace (ms): both keys are evicted natively at expiresAt + grace
-- Result   'ok' | 'lease_lost' (nothing written)
${PRELUDE}${finishOne(status)}
return finish_one(KEYS[1], KEYS[2], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  server_time())
`;
}

const COMPLETE_MANY = `
-- completeMany: complete on n distinct records in one call (a standalone server only), each
-- exactly as by complete, at one server time; one record's error is its own reply.
-- KEYS     record 1, its steps 1, record 2, its steps 2, ... (2n keys, n distinct records)
-- ARGV[1]  grace (ms)
-- ARGV[3i-1], ARGV[3i], ARGV[3i+1]   token, encoded result and ttl (ms) of record i
-- Result   an array of n strings: 'ok' | 'lease_lost' | 'x<error message>'
${PRELUDE}${finishOne('completed')}
local now = server_time()
local grace = tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local a = 3 * i - 1
  out[i] = outcome(pcall(finish_one, KEYS[2 * i - 1], KEYS[2 * i], ARGV[a], ARGV[a + 1],
    tonumber(ARGV[a + 2]), grace, now))
end
return out
`;

const RELEASE = `
-- release: ends the lease at once (a retryable failure); steps stay for the next attempt,
-- and the record (with its steps) is kept at least ttl from now, so that a late retry resumes.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- ARGV[1]  token
-- ARGV[2]  ttl (ms) from now, 0 to leave the expiry as it is
-- ARGV[3]  grace (ms): both keys are evicted natively at expiresAt + grace
-- Result   'ok' | 'lease_lost' (nothing written)
${PRELUDE}${FENCE}
local now = server_time()
local r = held(ARGV[1])
if r == false then return redis.error_reply(CORRUPT) end
if not r then return 'lease_lost' end
r.lu, r.ua = 0, num(now)
local ttl = tonumber(ARGV[2])
rewrite(r, ttl > 0 and now + ttl or 0, tonumber(ARGV[3]))
return 'ok'
`;

const HEARTBEAT = `
-- heartbeat: moves the lease end to now + lease (and the expiry with it, if the lease would
-- outlive the record), only under the current token.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- ARGV[1]  token
-- ARGV[2]  lease (ms)
-- ARGV[3]  grace (ms): both keys are evicted natively at expiresAt + grace
-- Result   'ok <leaseUntil>' | 'lease_lost'
${PRELUDE}${FENCE}
local now = server_time()
local r = held(ARGV[1])
if r == false then return redis.error_reply(CORRUPT) end
if not r then return 'lease_lost' end
r.lu, r.ua = now + tonumber(ARGV[2]), num(now)
rewrite(r, r.lu, tonumber(ARGV[3]))
return 'ok ' .. num(r.lu)
`;

const SAVE_STEP = `
-- saveStep: stores one completed step's result, only under the current token.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- ARGV[1]  token
-- ARGV[2]  step name (any string)
-- ARGV[3]  encoded step result (opaque, any bytes)
-- ARGV[4]  grace (ms): both keys are evicted natively at expiresAt + grace
-- Result   'ok' | 'lease_lost' (nothing written)
${PRELUDE}${FENCE}
local now = server_time()
local r = held(ARGV[1])
if r == false then return redis.error_reply(CORRUPT) end
if not r then return 'lease_lost' end
if r.hs == '0' then
  -- The first step: whatever a steps hash holds now belongs to no live record.
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  redis.call('PEXPIREAT', KEYS[2], num(r.exp + tonumber(ARGV[4])))
  r.hs = '1'
else
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
end
r.ua = num(now)
redis.call('SET', KEYS[1], header(r), 'KEEPTTL')
return 'ok'
`;

const GET = `
-- get: the record, expired or not (an evicted one is gone).
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- Result   'e<JSON [stepName, result, ...]>\\n<the record string>', or nil when there is none
${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v then return false end
local r = parse(v)
if not r then return redis.error_reply(CORRUPT) end
return 'e' .. steps_json(r.hs, KEYS[2]) .. '\\n' .. v
`;

const DELETE = `
-- delete: removes the record and its steps.
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- Result   1 when there was a record, else 0
local n = redis.call('DEL', KEYS[1])
redis.call('DEL', KEYS[2])
return n
`;

const PURGE = `
-- purge: removes the record if it has expired (native expiry takes it at the end of its grace).
-- KEYS[1]  record (string)           KEYS[2]  its steps (hash)
-- Result   1 when removed, else 0
${PRELUDE}
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local r = parse(v)
if not r or r.exp > server_time() then return 0 end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
`;

/** Every script by transition name. */
export const SCRIPTS = {
  begin: BEGIN,
  beginMany: BEGIN_MANY,
  complete: finishScript('complete', 'completed'),
  completeMany: COMPLETE_MANY,
  fail: finishScript('fail', 'failed'),
  release: RELEASE,
  heartbeat: HEARTBEAT,
  saveStep: SAVE_STEP,
  get: GET,
  delete: DELETE,
  purge: PURGE,
} as const;

/** The name of one transition's script. */
export type ScriptName = keyof typeof SCRIPTS;
