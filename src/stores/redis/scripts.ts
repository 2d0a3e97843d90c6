/**
 * The Lua scripts of the Redis store: one per state transition, each atomic on the server.
 *
 * A record is ONE hash, `<prefix>{<key>}`, so every script touches exactly one key and runs
 * unchanged on Redis Cluster (the braces are a hash tag: any key a later script adds for the
 * same record, `<prefix>{<key>}:x`, lands in the same slot).
 *
 * Hash fields: `fp` fingerprint, `st` status, `tok` token, `att` attempts, `lu` lease end,
 * `exp` expiry, `ca`/`ua` created/updated, `res` result, `err` error, `s:<name>` one step each.
 * Numbers are decimal integers written with `%.0f` (Lua's default `%.14g` would round a
 * 16-digit token). Every time is `TIME` on the server (Redis 7 replicates script effects, so a
 * script may read the clock before writing). A record is dead from `exp` on (the scripts check it);
 * native expiry evicts the hash `grace` ms later, so `get` and `purgeExpired` still see a record
 * that just expired, and a new operation on the key continues its token sequence.
 */

/** Shared helpers, prepended to every script. */
const PRELUDE = `
local function server_time()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end
local function now_ms()
  local ms = server_time()
  return ms
end
local function fmt(n)
  return string.format('%.0f', n)
end
`;

/**
 * Shared by the fenced writes: true when the record holds `token` and is in progress. A
 * missing record reads as `false` fields and fails. Expiry is not checked: a holder whose
 * record outlived its TTL (nobody took it over, or the token would differ) may still record
 * its outcome, rather than lose the result of an effect that happened. Once Redis has
 * evicted the hash (after the grace period), there is nothing left to fence against.
 */
const FENCE = `
local function fenced(key, token)
  local f = redis.call('HMGET', key, 'tok', 'st')
  if not f[1] or tonumber(f[1]) ~= tonumber(token) then return false end
  return f[2] == 'in_progress'
end
`;

const BEGIN = `
-- begin: claims a key, or returns the record that stands in the way, in one step.
-- KEYS[1]  record hash
-- ARGV[1]  fingerprint
-- ARGV[2]  lease (ms)
-- ARGV[3]  ttl (ms)
-- ARGV[4]  grace (ms): the hash is evicted natively at expiresAt + grace
-- Result   one string (a client decodes one string far faster than a nested array):
--          'a <token> <leaseUntil> <attempts> <takeover 1|0> <JSON [stepName, result, ...]>'
--          'e<JSON [field, value, ...]>'  (the whole hash, for a replay in this round trip)
-- Error    'REPROCESS_CORRUPT <why>' when the stored hash cannot be read.
-- Races closed: two workers can never both see "no record" or "lease ended", because the read
-- and the claim are one script; the token is max(previous + 1, server time in microseconds), so
-- it grows even when the previous record is gone (expired or deleted): the counter cannot
-- restart, and begin, complete, delete and begin again cannot fit in one microsecond.
${PRELUDE}
local now, floor = server_time()
local lease = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local leaseUntil = now + lease

local function claim_new(token)
  local exp = now + math.max(ttl, lease)
  redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'st', 'in_progress', 'tok', fmt(token), 'att', '1',
    'lu', fmt(leaseUntil), 'exp', fmt(exp), 'ca', fmt(now), 'ua', fmt(now))
  redis.call('PEXPIREAT', KEYS[1], fmt(exp + grace))
  return 'a ' .. fmt(token) .. ' ' .. fmt(leaseUntil) .. ' 1 0 []'
end

local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return claim_new(floor) end

local r = {}
for i = 1, #flat, 2 do r[flat[i]] = flat[i + 1] end
local tok, att, lu, exp = tonumber(r.tok), tonumber(r.att), tonumber(r.lu), tonumber(r.exp)
if not (tok and att and lu and exp and r.st and r.fp) then
  return redis.error_reply('REPROCESS_CORRUPT record hash is missing fields or has non-numeric ones')
end
local token = math.max(tok + 1, floor)

if exp <= now then
  -- Expired, in its grace period: a new operation; only the token sequence carries on.
  redis.call('DEL', KEYS[1])
  return claim_new(token)
end

if r.st == 'in_progress' and lu <= now and r.fp == ARGV[1] then
  -- The lease ended (crash, stall or release): the same operation resumes with its steps and
  -- its expiry, moved on only as far as the new lease needs.
  att = att + 1
  local newExp = math.max(exp, leaseUntil)
  redis.call('HSET', KEYS[1], 'tok', fmt(token), 'att', fmt(att), 'lu', fmt(leaseUntil),
    'exp', fmt(newExp), 'ua', fmt(now))
  redis.call('PEXPIREAT', KEYS[1], fmt(newExp + grace))
  local steps = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 's:' then
      steps[#steps + 1] = string.sub(flat[i], 3)
      steps[#steps + 1] = flat[i + 1]
    end
  end
  -- cjson writes an empty table as {}, so the empty list is spelled out.
  local stepsJson = #steps == 0 and '[]' or cjson.encode(steps)
  return 'a ' .. fmt(token) .. ' ' .. fmt(leaseUntil) .. ' ' .. fmt(att) .. ' 1 ' .. stepsJson
end

return 'e' .. cjson.encode(flat)
`;

/** Shared body of complete and fail: they differ only in the status and the field written. */
function finishScript(name: 'complete' | 'fail', status: string, field: string): string {
  return `
-- ${name}: ends the operation as '${status}', only under the current token.
-- KEYS[1]  record hash
-- ARGV[1]  token
-- ARGV[2]  encoded ${field === 'res' ? 'result' : 'error'} (opaque)
-- ARGV[3]  ttl (ms), counted from now
-- ARGV[4]  grace (ms): the hash is evicted natively at expiresAt + grace
-- Result   'ok' | 'lease_lost' (nothing written)
-- Race closed: a worker whose lease was taken over (stale token) cannot overwrite the outcome.
${PRELUDE}${FENCE}
local now = now_ms()
if not fenced(KEYS[1], ARGV[1]) then return 'lease_lost' end
local exp = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'st', '${status}', '${field}', ARGV[2], 'lu', '0', 'exp', fmt(exp),
  'ua', fmt(now))
redis.call('PEXPIREAT', KEYS[1], fmt(exp + tonumber(ARGV[4])))
return 'ok'
`;
}

const COMPLETE = finishScript('complete', 'completed', 'res');
const FAIL = finishScript('fail', 'failed', 'err');

const RELEASE = `
-- release: ends the lease at once (a retryable failure); steps stay for the next attempt.
-- KEYS[1]  record hash
-- ARGV[1]  token
-- Result   'ok' | 'lease_lost' (nothing written)
${PRELUDE}${FENCE}
local now = now_ms()
if not fenced(KEYS[1], ARGV[1]) then return 'lease_lost' end
redis.call('HSET', KEYS[1], 'lu', '0', 'ua', fmt(now))
return 'ok'
`;

const HEARTBEAT = `
-- heartbeat: moves the lease end to now + lease (and the expiry with it, if the lease would
-- outlive the record), only under the current token.
-- KEYS[1]  record hash
-- ARGV[1]  token
-- ARGV[2]  lease (ms)
-- ARGV[3]  grace (ms): the hash is evicted natively at expiresAt + grace
-- Result   {'ok', leaseUntil} | {'lease_lost'}
${PRELUDE}${FENCE}
local now = now_ms()
if not fenced(KEYS[1], ARGV[1]) then return {'lease_lost'} end
local lu = now + tonumber(ARGV[2])
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp'))
if lu > exp then
  redis.call('HSET', KEYS[1], 'lu', fmt(lu), 'exp', fmt(lu), 'ua', fmt(now))
  redis.call('PEXPIREAT', KEYS[1], fmt(lu + tonumber(ARGV[3])))
else
  redis.call('HSET', KEYS[1], 'lu', fmt(lu), 'ua', fmt(now))
end
return {'ok', fmt(lu)}
`;

const SAVE_STEP = `
-- saveStep: stores one completed step's result, only under the current token.
-- KEYS[1]  record hash
-- ARGV[1]  token
-- ARGV[2]  step name (any string; stored as field 's:' .. name)
-- ARGV[3]  encoded step result (opaque)
-- Result   'ok' | 'lease_lost' (nothing written)
${PRELUDE}${FENCE}
local now = now_ms()
if not fenced(KEYS[1], ARGV[1]) then return 'lease_lost' end
redis.call('HSET', KEYS[1], 's:' .. ARGV[2], ARGV[3], 'ua', fmt(now))
return 'ok'
`;

const GET = `
-- get: the whole record hash, expired or not (an evicted one is gone).
-- KEYS[1]  record hash
-- Result   {field, value, ...}, empty when there is no record
return redis.call('HGETALL', KEYS[1])
`;

const DELETE = `
-- delete: removes the record.
-- KEYS[1]  record hash
-- Result   1 when there was one, else 0
return redis.call('DEL', KEYS[1])
`;

const PURGE = `
-- purge: removes the record if it has expired (native expiry takes it at the end of its grace).
-- KEYS[1]  record hash
-- Result   1 when removed, else 0
${PRELUDE}
local exp = tonumber(redis.call('HGET', KEYS[1], 'exp'))
if exp ~= nil and exp <= now_ms() then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** Every script by transition name. */
export const SCRIPTS = {
  begin: BEGIN,
  complete: COMPLETE,
  fail: FAIL,
  release: RELEASE,
  heartbeat: HEARTBEAT,
  saveStep: SAVE_STEP,
  get: GET,
  delete: DELETE,
  purge: PURGE,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
