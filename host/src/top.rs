//! `host top -p FILE`: a live view of a running server, from the status
//! JSON its master publishes about once a second (no `--admin-bind`
//! needed). Rates and latency percentiles come from the difference between
//! two readings: requests answered, and the duration histogram's buckets.
//! On a terminal the screen is redrawn every second; otherwise one plain
//! line per second is printed (for logs and pipes).
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::Value;

use host::supervisor::control::{self, Remote};

use crate::cli::TopArgs;

const EVERY: Duration = Duration::from_secs(1);

pub fn run(args: TopArgs) -> Result<(), String> {
    let master = Remote::find(&args.pidfile)?;
    let tty = std::io::stdout().is_terminal();
    let mut before: Option<(Instant, Value)> = None;
    let mut shown = 0;
    loop {
        let now = Instant::now();
        let status = read(&master)?;
        let text = match &before {
            // A plain line needs two readings (a rate).
            None if !tty => None,
            _ => Some(if tty {
                screen(&status, before.as_ref().map(|(at, v)| (now - *at, v)))
            } else {
                let (at, v) = before.as_ref().expect("matched above");
                line(&status, now - *at, v)
            }),
        };
        if let Some(text) = text {
            let mut out = std::io::stdout().lock();
            let written = if tty {
                // Home, clear, draw.
                write!(out, "\x1b[H\x1b[2J{text}")
            } else {
                writeln!(out, "{text}")
            };
            // A closed pipe ends the view.
            if written.and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
            shown += 1;
            if args.iterations > 0 && shown >= args.iterations {
                return Ok(());
            }
        }
        before = Some((now, status));
        std::thread::sleep(EVERY.saturating_sub(now.elapsed()));
    }
}

/// The master's status JSON, parsed.
fn read(master: &Remote) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match master.status_json() {
            Ok(text) => {
                return serde_json::from_str(&text)
                    .map_err(|e| format!("master {}: unreadable status: {e}", master.pid))
            }
            Err(_) if !control::running(master.pid) => {
                return Err(format!("master {} is gone", master.pid))
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Requests per second, and the 50th, 90th and 99th percentiles of the
/// requests answered between the two readings (None without requests).
fn rates(now: &Value, elapsed: Duration, before: &Value) -> (f64, Option<[f64; 3]>) {
    let total = u(&now["requests"]["total"]).saturating_sub(u(&before["requests"]["total"]));
    let rps = total as f64 / elapsed.as_secs_f64().max(1e-3);
    let buckets = |v: &Value| -> Vec<(Option<f64>, u64)> {
        v["requests"]["duration_seconds"]["buckets"]
            .as_array()
            .map(|b| b.iter().map(|p| (p[0].as_f64(), u(&p[1]))).collect())
            .unwrap_or_default()
    };
    let (b1, b0) = (buckets(now), buckets(before));
    let delta: Vec<(Option<f64>, u64)> = b1
        .iter()
        .enumerate()
        .map(|(i, (le, n))| (*le, n.saturating_sub(b0.get(i).map_or(0, |b| b.1))))
        .collect();
    let count = delta.last().map_or(0, |d| d.1);
    if count == 0 {
        return (rps, None);
    }
    let q = |q: f64| percentile(&delta, count, q);
    (rps, Some([q(0.5), q(0.9), q(0.99)]))
}

/// The `q` quantile of a cumulative histogram of `count` samples,
/// interpolated within its bucket (infinite past the last bound).
fn percentile(cumulative: &[(Option<f64>, u64)], count: u64, q: f64) -> f64 {
    let target = q * count as f64;
    let (mut lower, mut below) = (0.0, 0);
    for &(le, n) in cumulative {
        if n as f64 >= target && n > below {
            return match le {
                Some(upper) => {
                    lower + (upper - lower) * (target - below as f64) / (n - below) as f64
                }
                None => f64::INFINITY,
            };
        }
        if let Some(le) = le {
            lower = le;
        }
        below = n;
    }
    f64::INFINITY
}

fn ms(s: f64) -> String {
    if s.is_infinite() {
        ">10s".into()
    } else if s >= 1.0 {
        format!("{s:.2}s")
    } else {
        format!("{:.2}ms", s * 1000.0)
    }
}

fn age(seconds: f64) -> String {
    let s = seconds as u64;
    match s {
        0..=59 => format!("{seconds:.1}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

/// One plain line: `requests/s 120.0 p50 0.41ms ... workers 2/2 ...`.
fn line(now: &Value, elapsed: Duration, before: &Value) -> String {
    let (rps, p) = rates(now, elapsed, before);
    let m = &now["master"];
    let workers = now["workers"].as_array().map_or(&[][..], |w| w);
    let ready = workers.iter().filter(|w| w["state"] == "ready").count();
    let p = p.map_or("p50 - p90 - p99 -".to_string(), |[a, b, c]| {
        format!("p50 {} p90 {} p99 {}", ms(a), ms(b), ms(c))
    });
    format!(
        "master {} {} build {} gen {} requests/s {rps:.1} {p} in-flight {} busy {}/{} workers {ready}/{} conns {} open {} idle exits {} reloads {}",
        m["pid"],
        m["state"].as_str().unwrap_or("?"),
        m["build"].as_str().unwrap_or("?"),
        m["generation"],
        u(&now["requests"]["in_flight"]),
        u(&now["app_threads"]["busy"]),
        u(&now["app_threads"]["busy"]) + u(&now["app_threads"]["idle"]),
        u(&m["workers_target"]),
        u(&now["connections"]["open"]),
        u(&now["connections"]["idle"]),
        sum(&now["worker_exits"]),
        sum(&now["reloads"]),
    )
}

fn sum(v: &Value) -> u64 {
    v.as_object().map_or(0, |o| o.values().map(u).sum())
}

/// The terminal screen.
fn screen(now: &Value, before: Option<(Duration, &Value)>) -> String {
    let mut out = String::new();
    let m = &now["master"];
    let _ = writeln!(
        out,
        "host top - master {}  build {} (generation {})  {}  up {}",
        m["pid"],
        m["build"].as_str().unwrap_or("?"),
        m["generation"],
        m["state"].as_str().unwrap_or("?"),
        age(m["uptime_s"].as_f64().unwrap_or(0.0))
    );
    let (rps, p) = match before {
        Some((elapsed, b)) => {
            let (rps, p) = rates(now, elapsed, b);
            (format!("{rps:.1}"), p)
        }
        None => ("-".into(), None),
    };
    let p = p.map_or("-".to_string(), |[a, b, c]| {
        format!("p50 {}  p90 {}  p99 {}", ms(a), ms(b), ms(c))
    });
    let _ = writeln!(
        out,
        "requests/s {rps}  latency {p}  total {}  in flight {}",
        u(&now["requests"]["total"]),
        u(&now["requests"]["in_flight"])
    );
    let _ = writeln!(
        out,
        "app threads {} busy / {} idle  connections {} open / {} idle  slow clients closed {}  refused {}",
        u(&now["app_threads"]["busy"]),
        u(&now["app_threads"]["idle"]),
        u(&now["connections"]["open"]),
        u(&now["connections"]["idle"]),
        u(&now["slow_clients_closed"]),
        sum(&now["refused"])
    );
    let _ = writeln!(
        out,
        "\n{:>8} {:>4} {:<13} {:<9} {:>8} {:>10} {:>9}  RUNNING",
        "WORKER", "GEN", "BUILD", "STATE", "AGE", "REQUESTS", "CONNS"
    );
    for w in now["workers"].as_array().map_or(&[][..], |w| w) {
        let running = w["running"].as_array().map_or(&[][..], |r| r);
        let _ = writeln!(
            out,
            "{:>8} {:>4} {:<13} {:<9} {:>8} {:>10} {:>9}  {}/{} threads busy",
            u(&w["pid"]),
            u(&w["generation"]),
            w["build"].as_str().unwrap_or("?"),
            w["state"].as_str().unwrap_or("?"),
            age(w["age_s"].as_f64().unwrap_or(0.0)),
            u(&w["requests"]),
            format!(
                "{}/{}",
                u(&w["connections"]["open"]),
                u(&w["connections"]["idle"])
            ),
            running.len(),
            u(&w["threads"])
        );
        for r in running {
            let line: String = r["request"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(70)
                .collect();
            let _ = writeln!(
                out,
                "{:>14} {:<3} {:>8}  {line}",
                "thread",
                u(&r["thread"]),
                age(u(&r["age_ms"]) as f64 / 1000.0)
            );
        }
    }
    let recent = now["recent"].as_array().map_or(&[][..], |r| r);
    if !recent.is_empty() {
        let _ = writeln!(out, "\nrecent exits and reloads:");
        for e in recent.iter().rev().take(8) {
            let _ = writeln!(
                out,
                "  {} {:<6} {}",
                clock(e["at"].as_f64().unwrap_or(0.0)),
                e["event"].as_str().unwrap_or("?"),
                e["text"].as_str().unwrap_or("")
            );
        }
    }
    out
}

/// `HH:MM:SS` (UTC) of a unix time.
fn clock(unix: f64) -> String {
    let s = unix as u64 % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_interpolate_within_buckets() {
        let h = [
            (Some(0.001), 50),
            (Some(0.01), 90),
            (Some(0.1), 100),
            (None, 100),
        ];
        assert!((percentile(&h, 100, 0.5) - 0.001).abs() < 1e-9);
        assert!((percentile(&h, 100, 0.7) - 0.0055).abs() < 1e-9);
        assert!((percentile(&h, 100, 0.99) - 0.091).abs() < 1e-9);
        let slow = [(Some(0.001), 0), (None, 4)];
        assert!(percentile(&slow, 4, 0.5).is_infinite());
    }
}
