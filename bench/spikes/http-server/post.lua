-- wrk script: POST a ~300-byte OpenAI-style chat request (path comes from the URL).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer sk-spike-0000000000000000"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},' ..
  '{"role":"user","content":"Summarise the following text in one sentence: the quick brown fox jumps over the lazy dog, ' ..
  'and then it runs back to the forest where it lives with its family."}],"temperature":0.2,"max_tokens":128,"stream":false}'

done = function(summary, latency, requests)
  io.write(string.format("BODYLEN %d\n", #wrk.body))
end
