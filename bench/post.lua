-- wrk script for bench/run.py: every request is the same POST of a V2 infer body.
-- The body (a batch-1 request of random floats) is written once by run.py to the
-- file named by BENCH_BODY_FILE, so the generator spends nothing building it.
local path = os.getenv("BENCH_BODY_FILE")
if path == nil or path == "" then
  error("set BENCH_BODY_FILE to the request body file (bench/run.py does)")
end
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
-- The binary tensor extension: the JSON header's length, and the body as octets.
local header_length = os.getenv("BENCH_HEADER_LENGTH")
if header_length ~= nil and header_length ~= "" then
  wrk.headers["Content-Type"] = "application/octet-stream"
  wrk.headers["Inference-Header-Content-Length"] = header_length
end
wrk.body = file:read("*a")
file:close()
local key = os.getenv("BENCH_API_KEY")
if key ~= nil and key ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. key
end
