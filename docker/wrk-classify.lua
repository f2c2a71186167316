-- wrk script: POST /classify with the JSON bodies in the file named by WRK_BODIES (one a line),
-- round robin from a random start per thread. Used by docker/compare.sh.
local bodies, i = {}, 0

function init(args)
  for line in io.lines(os.getenv("WRK_BODIES")) do bodies[#bodies + 1] = line end
  math.randomseed(os.time() + #args)
  i = math.random(#bodies)
end

function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/classify", {["Content-Type"] = "application/json"}, bodies[i])
end
