-- wrk script: HTTP/1.1 pipelining. Each write carries DEPTH requests
-- (default 16: `wrk ... -s bench/pipeline.lua URL -- 16`); wrk counts every
-- response, so its request count and Requests/sec are per request, not per
-- batch. Same shape as TechEmpower's plaintext pipeline.lua.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local r = {}
  for i = 1, depth do
    r[i] = wrk.format()
  end
  req = table.concat(r)
end

request = function()
  return req
end
