//! Manifest load tests, shared by the server and bucket scenarios: `GET` with `wrk --latency`,
//! `HEAD` with xtask's own loader (wrk 4.1 hangs on `HEAD`), each giving requests per second
//! and the 99th percentile latency.
//!
//! The loader keeps one blocking thread per connection: each connection then has exactly one
//! request in flight and is read as soon as its answer arrives, so a latency is the server's
//! plus a thread wake-up, never time spent waiting behind another connection of the same
//! client thread (as it would be with a few threads each driving several connections);
//! hundreds of small-stack threads cost the client little, and the same for both servers. All
//! connections are open before the clock starts.

use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::measure::{percentile, timed};
use super::peers::MANIFEST_TYPE;
use crate::describe;

/// The repository and tag whose manifest the load tests request (the scenarios push there).
pub(super) const REPO: &str = "bench/server";
pub(super) const TAG: &str = "latest";
/// Concurrent connections of the manifest load tests (`wrk` and the HEAD loader).
pub(super) const WRK_CONNECTIONS: u32 = 32;
/// hoist's manifest requests per second over the registry's, at least.
pub(super) const RPS_LIMIT: f64 = 2.0;
/// The stack of a HEAD loader thread: it only holds a few buffers.
const LOADER_STACK_BYTES: usize = 64 * 1024;

/// Writes the `wrk` script of the manifest `GET`s into `dir/get.lua` and returns its path.
pub(super) fn write_get_script(dir: &Path) -> Result<PathBuf> {
    let script = dir.join("get.lua");
    std::fs::write(
        &script,
        format!("wrk.method = \"GET\"\nwrk.headers[\"Accept\"] = \"{MANIFEST_TYPE}\"\n"),
    )
    .with_context(|| format!("cannot write {}", script.display()))?;
    Ok(script)
}

/// What `wrk` reports that the load tests use.
#[derive(Debug, Clone, PartialEq)]
struct WrkSummary {
    requests_per_sec: f64,
    /// Responses with a status outside 2xx and 3xx.
    non_2xx: u64,
    /// The `99%` line of `--latency`'s distribution, in milliseconds.
    p99_ms: Option<f64>,
}

/// A duration as wrk prints it (`812.00us`, `1.23ms`, `2.00s`, `1.50m`, `1.00h`), in
/// milliseconds.
fn parse_wrk_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "us" => return Some(number / 1000.0),
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3600e3,
        _ => return None,
    };
    Some(number * scale)
}

fn parse_wrk(stdout: &str) -> Result<WrkSummary> {
    let rps = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .with_context(|| format!("no `Requests/sec:` in the output of wrk:\n{stdout}"))?;
    let non_2xx = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
        .map(|v| v.trim().parse::<u64>())
        .transpose()
        .context("unreadable `Non-2xx or 3xx responses:` in the output of wrk")?
        .unwrap_or(0);
    let p99_ms = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| parse_wrk_duration_ms(v).context("unreadable `99%` latency in the output of wrk"))
        .transpose()?;
    Ok(WrkSummary {
        requests_per_sec: rps,
        non_2xx,
        p99_ms,
    })
}

/// What a manifest load test measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Load {
    pub(super) requests_per_sec: f64,
    /// The 99th percentile of the requests' latencies, in milliseconds.
    pub(super) p99_ms: f64,
}

/// Runs `wrk --latency` with `script` and `connections` connections against the manifest of
/// `base`, on two threads (one for a single connection: wrk needs a connection per thread).
pub(super) fn wrk(base: &str, script: &Path, connections: u32, seconds: u64) -> Result<Load> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        &format!("-t{}", connections.clamp(1, 2)),
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ])
    .arg("-s")
    .arg(script)
    .arg(format!("{base}/v2/{REPO}/manifests/{TAG}"));
    let (_, output) = timed(&mut cmd)?;
    let summary = parse_wrk(&String::from_utf8_lossy(&output.stdout))?;
    let p99_ms = match summary.p99_ms {
        Some(p99) if summary.non_2xx == 0 && summary.requests_per_sec > 0.0 => p99,
        _ => bail!("{} against {base}: {summary:?}", describe(&cmd)),
    };
    Ok(Load {
        requests_per_sec: summary.requests_per_sec,
        p99_ms,
    })
}

/// The status code of an HTTP response head in `buf`, once the head is complete
/// (`\r\n\r\n`); `None` while more is needed.
fn parse_head_status(buf: &[u8]) -> Option<u16> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// `HEAD` requests on the manifest of `base` with `connections` keep-alive connections for
/// `seconds`, one blocking thread each (see the module's documentation for why): wrk 4.1
/// (Debian's) waits for a body after a `HEAD` response with a `Content-Length` and so cannot
/// measure `HEAD`. Every request is timed from its write to the end of the response head; the
/// clock of the whole test starts once every connection is open.
pub(super) fn head_load(base: &str, connections: u32, seconds: u64) -> Result<Load> {
    let addr = base.trim_start_matches("http://").to_owned();
    let request = format!(
        "HEAD /v2/{REPO}/manifests/{TAG} HTTP/1.1\r\nHost: {addr}\r\nAccept: {MANIFEST_TYPE}\r\n\r\n"
    );
    let duration = Duration::from_secs(seconds);
    let ready = Arc::new(Barrier::new(connections as usize + 1));
    let mut threads = Vec::with_capacity(connections as usize);
    for _ in 0..connections {
        let (addr, request, ready) = (addr.clone(), request.clone(), Arc::clone(&ready));
        let thread = std::thread::Builder::new()
            .stack_size(LOADER_STACK_BYTES)
            .spawn(move || -> Result<Vec<u64>> {
                let conn = std::net::TcpStream::connect(&addr)
                    .with_context(|| format!("cannot connect to {addr}"));
                // Every thread reaches the barrier, connected or not, or the others would
                // wait forever.
                ready.wait();
                let mut conn = conn?;
                conn.set_nodelay(true)?;
                let deadline = Instant::now() + duration;
                // Nanoseconds of each request.
                let mut latencies = Vec::with_capacity(16 * 1024);
                let mut buf = Vec::with_capacity(4096);
                let mut chunk = [0u8; 4096];
                loop {
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    conn.write_all(request.as_bytes())?;
                    buf.clear();
                    let status = loop {
                        let n = conn.read(&mut chunk)?;
                        if n == 0 {
                            bail!("{addr} closed the connection");
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(status) = parse_head_status(&buf) {
                            break status;
                        }
                    };
                    let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    if status != 200 {
                        bail!("HEAD of the manifest on {addr} answered {status}");
                    }
                    latencies.push(nanos);
                }
                Ok(latencies)
            })
            .context("cannot start a HEAD load thread")?;
        threads.push(thread);
    }
    ready.wait();
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(mut mine)) => latencies.append(&mut mine),
            Ok(Err(e)) => failure = failure.or(Some(e)),
            Err(_) => failure = failure.or(Some(anyhow::anyhow!("a HEAD load thread panicked"))),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(e) = failure {
        return Err(e.context(format!(
            "HEAD load on {base} with {connections} connections"
        )));
    }
    let count = latencies.len();
    let p99 = percentile(&mut latencies, 99.0)
        .with_context(|| format!("no HEAD request on {base} completed"))?;
    Ok(Load {
        requests_per_sec: count as f64 / elapsed,
        p99_ms: p99 as f64 / 1e6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_is_parsed() {
        let out = "Running 5s test @ http://127.0.0.1:1/v2/r/manifests/latest\n\
                   \x20 2 threads and 32 connections\n\
                   \x20 61234 requests in 5.00s, 40.1MB read\n\
                   Requests/sec:  12246.80\n\
                   Transfer/sec:      8.02MB\n";
        assert_eq!(
            parse_wrk(out).unwrap(),
            WrkSummary {
                requests_per_sec: 12246.8,
                non_2xx: 0,
                p99_ms: None
            }
        );
        let errors = "  Non-2xx or 3xx responses: 17\nRequests/sec:    100.00\n";
        assert_eq!(parse_wrk(errors).unwrap().non_2xx, 17);
        assert!(parse_wrk("Usage: wrk <options> <url>\n").is_err());
        let latency = "Running 5s test @ http://127.0.0.1:1/v2/r/manifests/latest\n\
                       \x20 2 threads and 256 connections\n\
                       \x20 Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
                       \x20   Latency    10.12ms    3.40ms  61.00ms   90.12%\n\
                       \x20   Req/Sec    12.60k     1.10k   14.00k    70.00%\n\
                       \x20 Latency Distribution\n\
                       \x20    50%    9.80ms\n\
                       \x20    75%   11.20ms\n\
                       \x20    90%   13.00ms\n\
                       \x20    99%   24.51ms\n\
                       \x20 125000 requests in 5.00s, 80.1MB read\n\
                       Requests/sec:  25000.00\n";
        assert_eq!(
            parse_wrk(latency).unwrap(),
            WrkSummary {
                requests_per_sec: 25000.0,
                non_2xx: 0,
                p99_ms: Some(24.51)
            }
        );
        let bad = "    99%   lots\nRequests/sec:  1.00\n";
        assert!(parse_wrk(bad).is_err());
        assert_eq!(parse_wrk_duration_ms("812.00us"), Some(0.812));
        assert_eq!(parse_wrk_duration_ms(" 1.50ms"), Some(1.5));
        assert_eq!(parse_wrk_duration_ms("2.00s"), Some(2000.0));
        assert_eq!(parse_wrk_duration_ms("1.00m"), Some(60000.0));
        assert_eq!(parse_wrk_duration_ms("1.00h"), Some(3_600_000.0));
        assert_eq!(parse_wrk_duration_ms("3.00d"), None);
        assert_eq!(parse_wrk_duration_ms("12"), None);
    }

    #[test]
    fn head_responses_are_parsed() {
        assert_eq!(
            parse_head_status(b"HTTP/1.1 200 OK\r\nContent-Length: 9"),
            None
        );
        assert_eq!(
            parse_head_status(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"),
            Some(200)
        );
        assert_eq!(
            parse_head_status(b"HTTP/1.1 404 Not Found\r\n\r\n"),
            Some(404)
        );
    }
}
