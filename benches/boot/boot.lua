-- wrk script for benches/boot: every request is /boot of one of the MACHINES machines seeded in the
-- store (MAC, SMBIOS UUID and serial as iPXE sends them), picked at random; prints a JSON summary.
local machines = tonumber(os.getenv("MACHINES") or "10000")

local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  math.randomseed(os.time() * 100 + (id or 0))
end

request = function()
  local i = math.random(0, machines - 1)
  local path = string.format(
    "/boot?mac=02:b0:00:00:%02x:%02x&uuid=%08x-b0b0-4b0b-8b0b-%012x&serial=BENCH%05d" ..
    "&manufacturer=QEMU&product=Standard%%20PC&buildarch=x86_64&platform=efi&ip=10.0.%d.%d",
    math.floor(i / 256), i % 256, i, i, i, math.floor(i / 256), i % 256)
  return wrk.format("GET", path)
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout))
end
