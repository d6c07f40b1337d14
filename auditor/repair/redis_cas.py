"""One compare-and-set over a counter's Redis keys (spend key and start key together), for the writes that carry
no live increments: removals, start keys, undo. The live counter write (ledger + what the proxy added since the
read) is auditor.repair.live's DELTA_SCRIPT."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis import Redis

# One compare-and-set over N keys, atomically: every key must hold what the caller read (or be absent),
# then each is SET with an absolute expiry (PXAT) or deleted. Never INCRBYFLOAT (LiteLLM #28247).
# ARGV per key: expect_present, expected, write_present, value, pxat_ms (0 = no expiry).
CAS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local current = {}
local ok = true
for i = 1, n do
  local base = (i - 1) * 5
  local cur = redis.call('GET', KEYS[i])
  current[i] = cur
  if ARGV[base + 1] == '1' then
    if cur ~= ARGV[base + 2] then ok = false end
  elseif cur then
    ok = false
  end
end
if not ok then
  local out = {0}
  for i = 1, n do
    local ttl = redis.call('PTTL', KEYS[i])
    if current[i] then out[#out + 1] = '1'; out[#out + 1] = current[i]
    else out[#out + 1] = '0'; out[#out + 1] = '' end
    if ttl > 0 then out[#out + 1] = tostring(now + ttl) else out[#out + 1] = '0' end
  end
  return out
end
for i = 1, n do
  local base = (i - 1) * 5
  local at = tonumber(ARGV[base + 5])
  if ARGV[base + 3] == '1' and at > 0 and at - now > 0 then
    redis.call('SET', KEYS[i], ARGV[base + 4], 'PX', at - now)
  elseif ARGV[base + 3] == '1' and at == 0 then
    redis.call('SET', KEYS[i], ARGV[base + 4])
  else
    redis.call('DEL', KEYS[i])
  end
end
return {1}
"""


def redis_cas(client: Redis, expected: Sequence[dict], new: Sequence[dict]) -> tuple[bool, list[dict]]:
    """(written, the cells found instead when not written). Expiry is absolute (ms), applied as the
    remaining time on Redis's own clock; an expiry already past deletes the key."""
    keys = [cell["key"] for cell in new]
    args: list[str] = []
    for old, cell in zip(expected, new, strict=True):
        args += [
            "1" if old.get("value") is not None else "0",
            old.get("value") or "",
            "1" if cell.get("value") is not None else "0",
            cell.get("value") or "",
            str(cell.get("expire_at_ms") or 0),
        ]
    reply = client.eval(CAS_SCRIPT, len(keys), *keys, *args)
    if int(reply[0]) == 1:
        return True, []
    found = reply[1:]
    return False, [
        {
            "key": key,
            "value": found[3 * i + 1] if found[3 * i] == "1" else None,
            "expire_at_ms": int(found[3 * i + 2]) if found[3 * i] == "1" and int(found[3 * i + 2]) > 0 else None,
        }
        for i, key in enumerate(keys)
    ]
