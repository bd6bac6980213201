-- wrk script for bench/multi/run.sh: POST an OpenAI chat request whose prompt is new every
-- time (thread id and counter in it), so that every request misses the answer cache and
-- goes upstream: the cache's lookup and store, the budget's reservation and settlement and
-- the rate limit are all on the path. BENCH_KEY: the bearer token (the master key).
local key = os.getenv("BENCH_KEY") or "sk-bench-master"
local counter, tid = 0, 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  tid = tid or 0
end
function request()
  counter = counter + 1
  local body = string.format(
    '{"model":"m","max_tokens":20,"messages":[{"role":"user","content":"question %d-%d-%d: what is the capital of France?"}]}',
    tid, counter, math.random(1000000000))
  return wrk.format("POST", "/v1/chat/completions",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. key }, body)
end
