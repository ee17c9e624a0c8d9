//! What the master says about itself: a `Snapshot` of its workers, builds
//! and counters, written out as Prometheus text, OpenMetrics text, or the
//! status JSON (`/status`, `host status --json`, `host top`).
use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::{json, Value};

use crate::runtime::metrics::{Totals, BOUNDS, CLASSES, METHODS, REFUSED};

/// Causes a worker's exit is counted under (`host_worker_exits_total`).
pub const EXIT_CAUSES: [&str; 6] = ["retired", "recycle", "timeout", "signal", "exit", "boot"];
/// Reload outcomes (`host_reloads_total`).
pub const RELOAD_OUTCOMES: [&str; 3] = ["ok", "failed", "rolled_back"];
/// Worker states (`host_workers`).
pub const WORKER_STATES: [&str; 3] = ["booting", "ready", "retiring"];

/// The master's counters of its own (workers' counts are in `Totals`).
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// By `EXIT_CAUSES` index.
    pub exits: [u64; EXIT_CAUSES.len()],
    /// By `RELOAD_OUTCOMES` index.
    pub reloads: [u64; RELOAD_OUTCOMES.len()],
    pub rollbacks: u64,
    /// The latest exits and reloads: (unix seconds, kind, what).
    pub recent: std::collections::VecDeque<(f64, &'static str, String)>,
}

/// How many recent events the status keeps.
const RECENT: usize = 20;

impl Events {
    pub fn exit(&mut self, cause: usize, text: String) {
        self.exits[cause] += 1;
        self.remember("exit", text);
    }

    pub fn reload(&mut self, outcome: usize, text: String) {
        self.reloads[outcome] += 1;
        if outcome == 2 {
            self.rollbacks += 1;
        }
        self.remember("reload", text);
    }

    fn remember(&mut self, kind: &'static str, text: String) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((now, kind, text));
    }
}

/// One worker, as the status shows it.
#[derive(Debug, Clone)]
pub struct WorkerView {
    pub pid: i32,
    pub slot: usize,
    pub build: String,
    pub generation: u32,
    /// One of `WORKER_STATES`.
    pub state: &'static str,
    pub age_s: f64,
    pub requests: u64,
    pub in_flight: u64,
    pub open: u64,
    pub idle: u64,
    pub threads: usize,
    /// App threads running app code: (thread, request line, age in ms).
    pub running: Vec<(usize, String, u64)>,
}

/// Everything a scrape or the status reports.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub pid: u32,
    pub build: String,
    pub generation: u32,
    /// The current build of each mounted app.
    pub mounts: Vec<MountView>,
    pub uptime_s: f64,
    /// `serving`, `term-delay` (TERM came; serving on for `--term-delay`)
    /// or `stopping`.
    pub state: &'static str,
    /// `/readyz`: a generation is serving and the server is not draining.
    pub ready: bool,
    pub target: usize,
    /// App threads per worker (`--threads`).
    pub threads: usize,
    /// Counts of every worker that ever ran (exited ones folded in); the
    /// connection gauges of the live ones.
    pub totals: Totals,
    pub in_flight: u64,
    pub busy: u64,
    pub idle_threads: u64,
    pub workers: Vec<WorkerView>,
    pub events: Events,
}

/// One mounted app of the current build, for the status.
#[derive(Debug, Clone)]
pub struct MountView {
    pub prefix: String,
    /// The file as the user named it.
    pub plugin: String,
    pub build: String,
    /// The generation that staged its build (older than the set's when
    /// reloads left it unchanged).
    pub generation: u32,
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A float as both formats want it.
fn num(v: f64) -> String {
    if v.is_infinite() {
        "+Inf".into()
    } else {
        format!("{v}")
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// An info metric: `NAME_info{labels} 1` (OpenMetrics' info type; a
    /// gauge in Prometheus text).
    Info,
}

/// Metric families written out in one format.
struct Exposition {
    out: String,
    /// OpenMetrics 1.0, else Prometheus text 0.0.4.
    open: bool,
}

impl Exposition {
    /// Writes a metric family: its HELP and TYPE lines, then one sample
    /// per (labels, value). Counters' samples are `NAME_total` and info
    /// metrics' `NAME_info`; Prometheus text declares the family under the
    /// sample's name, OpenMetrics without the suffix. A histogram's
    /// samples are written by the caller.
    fn family(&mut self, kind: Kind, name: &str, help: &str, samples: &[(String, u64)]) {
        let (suffix, type_name) = match kind {
            Kind::Counter => ("_total", "counter"),
            Kind::Gauge => ("", "gauge"),
            Kind::Histogram => ("", "histogram"),
            Kind::Info if self.open => ("_info", "info"),
            Kind::Info => ("_info", "gauge"),
        };
        let declared = if self.open {
            name.to_string()
        } else {
            format!("{name}{suffix}")
        };
        let out = &mut self.out;
        let _ = writeln!(
            out,
            "# HELP {declared} {help}\n# TYPE {declared} {type_name}"
        );
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{suffix}{labels} {value}");
        }
    }
}

/// One sample per name, labelled `label="name"`.
fn by(
    label: &str,
    names: &[impl std::fmt::Display],
    value: impl Fn(usize) -> u64,
) -> Vec<(String, u64)> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("{{{label}=\"{n}\"}}"), value(i)))
        .collect()
}

impl Snapshot {
    /// The metrics: Prometheus text format (0.0.4), or OpenMetrics 1.0
    /// (`open`), whose counters are declared without `_total` and which
    /// ends with `# EOF`.
    pub fn metrics(&self, open: bool) -> String {
        let mut w = Exposition {
            out: String::with_capacity(8 * 1024),
            open,
        };
        let t = &self.totals;
        let requests: Vec<(String, u64)> = METHODS
            .iter()
            .enumerate()
            .flat_map(|(m, method)| {
                CLASSES.iter().enumerate().map(move |(c, class)| {
                    (
                        format!("{{method=\"{method}\",status=\"{class}\"}}"),
                        t.cell(m, c),
                    )
                })
            })
            .collect();
        w.family(
            Kind::Counter,
            "host_requests",
            "Requests answered by app code, by method and status class.",
            &requests,
        );
        let name = "host_request_duration_seconds";
        w.family(
            Kind::Histogram,
            name,
            "Time from a request's head parsed to its response complete (app code and sending to the socket).",
            &[],
        );
        let mut cumulative = 0;
        for (i, n) in t.buckets.iter().enumerate() {
            cumulative += n;
            let le = BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            let _ = writeln!(w.out, "{name}_bucket{{le=\"{}\"}} {cumulative}", num(le));
        }
        let _ = writeln!(w.out, "{name}_sum {}", num(t.seconds()));
        let _ = writeln!(w.out, "{name}_count {cumulative}");
        let one = |v: u64| [(String::new(), v)];

        w.family(
            Kind::Counter,
            "host_request_bytes",
            "Bytes received from clients (request heads and bodies) by the workers' event loops.",
            &one(t.bytes_in),
        );
        w.family(
            Kind::Counter,
            "host_response_body_bytes",
            "Bytes of response bodies sent.",
            &one(t.bytes_out),
        );
        w.family(
            Kind::Gauge,
            "host_requests_in_flight",
            "Requests running app code, or parked with a body iterator waiting for a slow client.",
            &one(self.in_flight),
        );
        w.family(
            Kind::Gauge,
            "host_app_threads",
            "App threads of the live workers, running app code (busy) or not (idle).",
            &by("state", &["busy", "idle"], |i| {
                [self.busy, self.idle_threads][i]
            }),
        );
        w.family(
            Kind::Gauge,
            "host_connections_open",
            "Client connections open in the live workers.",
            &one(t.open),
        );
        w.family(
            Kind::Gauge,
            "host_connections_idle",
            "Open keep-alive connections waiting for their next request.",
            &one(t.idle),
        );
        w.family(
            Kind::Gauge,
            "host_workers",
            "Worker processes by state.",
            &by("state", &WORKER_STATES, |i| {
                self.workers
                    .iter()
                    .filter(|w| w.state == WORKER_STATES[i])
                    .count() as u64
            }),
        );
        w.family(
            Kind::Gauge,
            "host_workers_target",
            "Workers wanted (-w, TTIN/TTOU).",
            &one(self.target as u64),
        );
        let build_info = [(
            format!(
                "{{build=\"{}\",generation=\"{}\"}}",
                label(&self.build),
                self.generation
            ),
            1,
        )];
        w.family(
            Kind::Info,
            "host_build",
            "The build new workers get, and its generation.",
            &build_info,
        );
        w.family(
            Kind::Gauge,
            "host_ready",
            "1 while a generation serves and the server is not draining (/readyz).",
            &one(u64::from(self.ready)),
        );
        w.family(
            Kind::Counter,
            "host_worker_exits",
            "Worker exits by cause: retired (reload, fewer workers, stop), recycle (--max-requests), timeout (-t), signal (a crash), exit (a non-zero exit), boot (could not boot).",
            &by("cause", &EXIT_CAUSES, |i| self.events.exits[i]),
        );
        w.family(
            Kind::Counter,
            "host_reloads",
            "Reloads by outcome.",
            &by("outcome", &RELOAD_OUTCOMES, |i| self.events.reloads[i]),
        );
        w.family(
            Kind::Counter,
            "host_rollbacks",
            "Reloaded builds rolled back for crashing in their settle period.",
            &one(self.events.rollbacks),
        );
        w.family(
            Kind::Counter,
            "host_slow_clients_closed",
            "Clients closed for being too slow (sending a head or body, or reading a response).",
            &one(t.slow),
        );
        w.family(
            Kind::Counter,
            "host_requests_refused",
            "Requests the server refused itself, before app code, by status.",
            &by("status", &REFUSED, |i| t.refused[i]),
        );
        if open {
            w.out.push_str("# EOF\n");
        }
        w.out
    }

    /// The status JSON.
    pub fn json(&self) -> Value {
        let t = &self.totals;
        let by = |names: &[&str], f: &dyn Fn(usize) -> u64| -> Value {
            Value::Object(
                names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), json!(f(i))))
                    .collect(),
            )
        };
        let mut cumulative = 0;
        let buckets: Vec<Value> = t
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                cumulative += n;
                json!([BOUNDS.get(i), cumulative])
            })
            .collect();
        let mut generations: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        for w in &self.workers {
            generations
                .entry(w.generation)
                .or_insert_with(|| (w.build.clone(), 0))
                .1 += 1;
        }
        generations
            .entry(self.generation)
            .or_insert_with(|| (self.build.clone(), 0));
        let generations: Vec<Value> = generations
            .into_iter()
            .map(|(g, (build, n))| {
                json!({"generation": g, "build": build, "workers": n, "current": g == self.generation})
            })
            .collect();
        let workers: Vec<Value> = self
            .workers
            .iter()
            .map(|w| {
                json!({
                    "pid": w.pid,
                    "slot": w.slot,
                    "build": w.build,
                    "generation": w.generation,
                    "state": w.state,
                    "age_s": round(w.age_s),
                    "requests": w.requests,
                    "in_flight": w.in_flight,
                    "connections": {"open": w.open, "idle": w.idle},
                    "threads": w.threads,
                    "running": w.running.iter().map(|(thread, line, age)| {
                        json!({"thread": thread, "request": line, "age_ms": age})
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "master": {
                "pid": self.pid,
                "build": self.build,
                "generation": self.generation,
                "uptime_s": round(self.uptime_s),
                "state": self.state,
                "ready": self.ready,
                "workers_target": self.target,
                "threads_per_worker": self.threads,
            },
            "generations": generations,
            "mounts": self.mounts.iter().map(|m| json!({
                "prefix": m.prefix,
                "plugin": m.plugin,
                "build": m.build,
                "generation": m.generation,
            })).collect::<Vec<_>>(),
            "workers": workers,
            "requests": {
                "total": t.ended(),
                "in_flight": self.in_flight,
                "by_status": by(&CLASSES, &|c| (0..METHODS.len()).map(|m| t.cell(m, c)).sum()),
                "by_method": by(&METHODS, &|m| (0..CLASSES.len()).map(|c| t.cell(m, c)).sum()),
                "duration_seconds": {"buckets": buckets, "sum": t.seconds(), "count": cumulative},
            },
            "bytes": {"in": t.bytes_in, "out": t.bytes_out},
            "app_threads": {"busy": self.busy, "idle": self.idle_threads},
            "connections": {"open": t.open, "idle": t.idle},
            "slow_clients_closed": t.slow,
            "refused": by(&REFUSED.map(|s| match s { 400 => "400", 408 => "408", 413 => "413", 414 => "414", _ => "431" }), &|i| t.refused[i]),
            "worker_exits": by(&EXIT_CAUSES, &|i| self.events.exits[i]),
            "reloads": by(&RELOAD_OUTCOMES, &|i| self.events.reloads[i]),
            "rollbacks": self.events.rollbacks,
            "recent": self.events.recent.iter().map(|(at, kind, text)| {
                json!({"at": round(*at), "event": kind, "text": text})
            }).collect::<Vec<_>>(),
        })
    }
}

/// Seconds to the millisecond: the JSON stays short.
fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let mut totals = Totals::new();
        totals.requests[1] = 3; // GET 2xx
        totals.buckets[0] = 3;
        Snapshot {
            pid: 1,
            build: "abc\"def".into(),
            generation: 2,
            mounts: Vec::new(),
            uptime_s: 1.0,
            state: "serving",
            ready: true,
            target: 1,
            threads: 1,
            totals,
            in_flight: 0,
            busy: 0,
            idle_threads: 1,
            workers: vec![],
            events: Events::default(),
        }
    }

    #[test]
    fn both_formats() {
        let s = snapshot();
        let prom = s.metrics(false);
        assert!(prom.contains("# TYPE host_requests_total counter\n"));
        assert!(prom.contains("host_requests_total{method=\"GET\",status=\"2xx\"} 3\n"));
        assert!(prom.contains("host_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(prom.contains("host_build_info{build=\"abc\\\"def\",generation=\"2\"} 1\n"));
        assert!(!prom.contains("# EOF"));
        let om = s.metrics(true);
        assert!(om.contains("# TYPE host_requests counter\n"));
        assert!(om.contains("# TYPE host_build info\n"));
        assert!(om.ends_with("# EOF\n"));
        let json = s.json();
        assert_eq!(json["requests"]["total"], 3);
        assert_eq!(json["requests"]["by_status"]["2xx"], 3);
    }
}
