-- wrk script for bench/cache/run.sh: the same chat request every time (a cache hit after the
-- first), or, with BENCH_MODE=semantic, a new spelling every time: the letters' case spells
-- a counter, so the exact key is new while the words (lowercased by the embedder and the
-- re-ranking check) are the same: an exact miss that the semantic cache answers.
--   BENCH_MODE: exact | stream | semantic
local mode = os.getenv("BENCH_MODE") or "exact"
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local exact = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"how do I reset my online banking password"}]}'
if mode == "stream" then
  wrk.headers["Accept"] = "text/event-stream"
  wrk.body = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"how do I reset my online banking password"}]}'
elseif mode == "exact" then
  wrk.body = exact
end
local base = "how do i reset my online banking password"
local function spelled(k)
  local out = {}
  for i = 1, #base do
    local c = base:sub(i, i)
    if c:match("%a") then
      if k % 2 == 1 then c = c:upper() end
      k = math.floor(k / 2)
    end
    out[#out + 1] = c
  end
  return table.concat(out)
end
if mode == "semantic" then
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil,
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"' .. spelled(n) .. '"}]}')
  end
end
