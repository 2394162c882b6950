-- wrk script: prints one machine-readable result line when the run ends, so
-- run.sh does not have to parse wrk's human-readable text (whose units
-- change between us, ms and s).
--
--   BENCH_RESULT <requests> <duration_us> <bytes> <p50_us> <p99_us> <socket_errors> <bad_status>
--
-- socket_errors = connect + read + write + timeout errors;
-- bad_status    = responses with a status >= 400 (wrk's "Non-2xx or 3xx").

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("BENCH_RESULT %d %d %d %d %d %d %d\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(99),
      e.connect + e.read + e.write + e.timeout, e.status))
end
