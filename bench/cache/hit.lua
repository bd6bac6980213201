-- wrk script for bench/cache/run.sh: the same chat request every time (a cache hit after the
-- first), or, with BENCH_MODE=semantic, a new wording every time: an exact miss that the
-- semantic cache answers (the number is not in the word vectors, so the embedding is the
-- same; the exact key is not).
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
if mode == "semantic" then
  request = function()
    n = n + 1
    return wrk.format(nil, nil, nil,
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"how do I reset my online banking password ' .. n .. '"}]}')
  end
end
