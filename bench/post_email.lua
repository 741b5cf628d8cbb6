-- wrk script: POST a JSON email body read from the file named after `--`.
--   wrk -t2 -c64 -d15s --latency -s bench/post_email.lua URL -- body.json
-- done() prints machine-readable "BENCH key=value" lines for bench/enqueue.py.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

function init(args)
  local file = assert(io.open(args[1], "rb"), "usage: -- BODY_FILE")
  wrk.body = file:read("*a")
  file:close()
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d status=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, errors.status,
    errors.connect, errors.read, errors.write, errors.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("BENCH p%s_us=%d\n", p, latency:percentile(p)))
  end
  io.write(string.format("BENCH max_us=%d\n", latency.max))
end
