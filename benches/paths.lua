-- wrk script for the `paths` scenario: cycles through a list of URLs, one
-- request per URL in rotation, each with its own Host header.
--
-- The list comes from the file named by $PATHS_FILE, one "host path" per line.
-- Headers given with -H (e.g. Accept-Encoding) are added to every request;
-- the Host header from the list wins.
--
-- Every request string is built once in init(), so request() only picks the
-- next one: wrk's Lua cost per request stays tiny and the load generator is
-- not the bottleneck.

-- Shares done() (the BENCH_RESULT line) with the other scenarios.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "report.lua")

local requests_ = {}
local next_ = 1

function init(args)
   local file = os.getenv("PATHS_FILE")
   assert(file, "paths.lua: set PATHS_FILE to a file of \"host path\" lines")
   for line in io.lines(file) do
      local host, path = line:match("^(%S+)%s+(%S+)$")
      if host then
         local headers = {}
         for name, value in pairs(wrk.headers) do
            headers[name] = value
         end
         headers["Host"] = host
         requests_[#requests_ + 1] = wrk.format("GET", path, headers)
      end
   end
   assert(#requests_ > 0, "paths.lua: no \"host path\" lines in " .. file)
end

function request()
   local r = requests_[next_]
   next_ = next_ % #requests_ + 1
   return r
end
