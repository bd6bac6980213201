-- wrk script for bench/run.sh: POST an OpenAI chat request (the path comes from the URL).
--   BENCH_STREAM=1  ask for a stream ("stream":true) and send "Accept: text/event-stream";
--                   the bench upstream (nginx) switches to its SSE answer on that header,
--                   and ahorro sends that header upstream for every stream.
local stream = os.getenv("BENCH_STREAM") == "1"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if stream then
  wrk.headers["Accept"] = "text/event-stream"
  wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}],"stream":true}'
else
  wrk.headers["Accept"] = "application/json"
  wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
end
