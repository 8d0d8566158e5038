//! `loadgen`: drives one aetcd client with many concurrent get/put operations and
//! prints one line of throughput, CPU cost and latency figures.
//!
//! ```text
//! loadgen --endpoints URL[,URL..] --runtime tokio|smol --op get|put|mixed \
//!         --total N --concurrency C [--value-size 256] [--key-count 1000]
//! ```
//!
//! The benchmark loop is written once, generic over [`BenchRuntime`]: an
//! `aetcd_h2::Runtime` that can also spawn the worker tasks.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aetcd_h2::{Client, Error, Runtime};
use bytes::Bytes;

const USAGE: &str = "usage: loadgen --endpoints URL[,URL..] --runtime tokio|smol --op get|put|mixed \
                     --total N --concurrency C [--value-size 256] [--key-count 1000]";

/// Tasks used to pre-load the keys (the pre-load is not measured).
const PRELOAD_TASKS: usize = 64;

// ---------------------------------------------------------------------------
// Arguments

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RuntimeKind {
    Tokio,
    Smol,
}

impl RuntimeKind {
    fn name(self) -> &'static str {
        match self {
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::Smol => "smol",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Put,
    Mixed,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Clone)]
struct Args {
    endpoints: Vec<String>,
    runtime: RuntimeKind,
    op: Op,
    total: u64,
    concurrency: usize,
    value_size: usize,
    key_count: usize,
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    let cleaned: String = value.chars().filter(|c| *c != '_').collect();
    cleaned.parse().map_err(|_| format!("{flag}: not a valid number: {value:?}"))
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let mut endpoints = None;
    let mut runtime = None;
    let mut op = None;
    let mut total = None;
    let mut concurrency = None;
    let mut value_size = 256;
    let mut key_count = 1000;

    let mut argv = argv.into_iter();
    while let Some(arg) = argv.next() {
        if arg == "-h" || arg == "--help" {
            return Err(String::new());
        }
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| argv.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--endpoints" => {
                let list: Vec<String> =
                    value()?.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
                if list.is_empty() {
                    return Err("--endpoints: no endpoint given".into());
                }
                endpoints = Some(list);
            }
            "--runtime" => {
                runtime = Some(match value()?.as_str() {
                    "tokio" => RuntimeKind::Tokio,
                    "smol" => RuntimeKind::Smol,
                    other => return Err(format!("--runtime: expected tokio or smol, got {other:?}")),
                })
            }
            "--op" => {
                op = Some(match value()?.as_str() {
                    "get" => Op::Get,
                    "put" => Op::Put,
                    "mixed" => Op::Mixed,
                    other => return Err(format!("--op: expected get, put or mixed, got {other:?}")),
                })
            }
            "--total" => total = Some(parse_number::<u64>(&flag, &value()?)?),
            "--concurrency" => concurrency = Some(parse_number::<usize>(&flag, &value()?)?),
            "--value-size" => value_size = parse_number(&flag, &value()?)?,
            "--key-count" => key_count = parse_number(&flag, &value()?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    let args = Args {
        endpoints: endpoints.ok_or("--endpoints is required")?,
        runtime: runtime.ok_or("--runtime is required")?,
        op: op.ok_or("--op is required")?,
        total: total.ok_or("--total is required")?,
        concurrency: concurrency.ok_or("--concurrency is required")?,
        value_size,
        key_count,
    };
    if args.total == 0 {
        return Err("--total must be at least 1".into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if args.key_count == 0 {
        return Err("--key-count must be at least 1".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------
// The runtime seam of the benchmark itself

/// A boxed future of a spawned task's output.
type Join<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An aetcd runtime that can also run the benchmark's own tasks.
trait BenchRuntime: Runtime {
    /// Runs `task` in the background; the returned future yields its output.
    fn spawn_task<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Join<T>;
}

impl BenchRuntime for aetcd_tokio::Tokio {
    fn spawn_task<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Join<T> {
        let handle = tokio::spawn(task);
        Box::pin(async move {
            match handle.await {
                Ok(v) => v,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        })
    }
}

impl BenchRuntime for aetcd_smol::Smol {
    fn spawn_task<T: Send + 'static>(task: impl Future<Output = T> + Send + 'static) -> Join<T> {
        Box::pin(smol::spawn(task))
    }
}

// ---------------------------------------------------------------------------
// Measurement helpers

/// xorshift64: tiny, fast and good enough to pick keys.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Spread small seeds over the state and never start at zero.
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Clock ticks per second of `/proc/self/stat` times (`getconf CLK_TCK`, else 100).
fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// User + system CPU time of this process so far, in clock ticks.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Field 2 (comm) is parenthesised and may contain spaces: skip past it. What
    // follows starts at field 3 (state); utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The nearest-rank `q` quantile of sorted samples.
fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// The benchmark

/// What all workers share.
struct Plan {
    op: Op,
    total: u64,
    keys: Vec<Bytes>,
    value: Bytes,
    next: AtomicU64,
    error_reported: AtomicBool,
}

impl Plan {
    fn report_error(&self, what: &str, key: &Bytes, e: &dyn std::fmt::Display) {
        if !self.error_reported.swap(true, Ordering::Relaxed) {
            eprintln!("loadgen: first error: {what} {}: {e}", String::from_utf8_lossy(key));
        }
    }
}

/// What one worker measured.
#[derive(Default)]
struct WorkerResult {
    latencies_us: Vec<u32>,
    errors: u64,
}

/// Takes operation indexes from the shared counter until `total` are taken.
async fn worker<R: Runtime>(client: Client<R>, plan: Arc<Plan>, seed: u64) -> WorkerResult {
    let mut rng = XorShift::new(seed);
    let mut result = WorkerResult {
        latencies_us: Vec::with_capacity((plan.total / 8).min(1 << 20) as usize),
        errors: 0,
    };
    loop {
        let index = plan.next.fetch_add(1, Ordering::Relaxed);
        if index >= plan.total {
            return result;
        }
        let key = &plan.keys[rng.below(plan.keys.len())];
        let is_get = match plan.op {
            Op::Get => true,
            Op::Put => false,
            Op::Mixed => index % 2 == 0,
        };
        let started = Instant::now();
        let outcome = if is_get {
            match client.get(key.clone()).await {
                Ok(r) if r.kv().is_some_and(|kv| kv.value.len() == plan.value.len()) => Ok(()),
                Ok(r) => Err(format!("unexpected answer: {} key(s), value {:?} bytes", r.kvs.len(), r.kv().map(|kv| kv.value.len()))),
                Err(e) => Err(e.to_string()),
            }
        } else {
            client.put(key.clone(), plan.value.clone()).await.map(drop).map_err(|e| e.to_string())
        };
        let elapsed = started.elapsed();
        match outcome {
            Ok(()) => result.latencies_us.push(micros(elapsed)),
            Err(e) => {
                result.errors += 1;
                plan.report_error(if is_get { "get" } else { "put" }, key, &e);
            }
        }
    }
}

/// Writes every key once, with `tasks` concurrent writers.
async fn preload<R: BenchRuntime>(client: &Client<R>, plan: &Arc<Plan>, tasks: usize) -> Result<(), Error> {
    let next = Arc::new(AtomicU64::new(0));
    let handles: Vec<Join<Result<(), Error>>> = (0..tasks)
        .map(|_| {
            let (client, plan, next) = (client.clone(), plan.clone(), next.clone());
            R::spawn_task(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(key) = plan.keys.get(i) else { return Ok(()) };
                    client.put(key.clone(), plan.value.clone()).await?;
                }
            })
        })
        .collect();
    let mut first_error = Ok(());
    for h in handles {
        if let Err(e) = h.await {
            if first_error.is_ok() {
                first_error = Err(e);
            }
        }
    }
    first_error
}

struct Summary {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    cpu_ticks: Option<u64>,
    latencies_us: Vec<u32>,
}

/// Connects, pre-loads, runs the measured phase and closes the client.
async fn bench<R: BenchRuntime>(args: &Args) -> Result<Summary, String> {
    let client = Client::<R>::connect(args.endpoints.clone())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.endpoints.join(",")))?;

    let keys = (0..args.key_count).map(|i| Bytes::from(format!("bench/{i:08}"))).collect();
    let plan = Arc::new(Plan {
        op: args.op,
        total: args.total,
        keys,
        value: Bytes::from(vec![b'x'; args.value_size]),
        next: AtomicU64::new(0),
        error_reported: AtomicBool::new(false),
    });
    preload(&client, &plan, PRELOAD_TASKS.min(args.key_count)).await.map_err(|e| format!("pre-load failed: {e}"))?;

    let cpu_before = process_cpu_ticks();
    let started = Instant::now();
    let handles: Vec<Join<WorkerResult>> = (0..args.concurrency)
        .map(|i| R::spawn_task(worker(client.clone(), plan.clone(), i as u64 + 1)))
        .collect();
    let mut latencies_us = Vec::with_capacity(args.total as usize);
    let mut errors = 0;
    for h in handles {
        let mut r = h.await;
        errors += r.errors;
        latencies_us.append(&mut r.latencies_us);
    }
    let elapsed = started.elapsed();
    let cpu_ticks = cpu_before.zip(process_cpu_ticks()).map(|(a, b)| b.saturating_sub(a));

    client.close().await;
    latencies_us.sort_unstable();
    Ok(Summary { ok: latencies_us.len() as u64, errors, elapsed, cpu_ticks, latencies_us })
}

fn print_summary(args: &Args, s: &Summary, ticks_per_second: u64) {
    let secs = s.elapsed.as_secs_f64();
    let done = s.ok + s.errors;
    let ops_per_s = if secs > 0.0 { s.ok as f64 / secs } else { 0.0 };
    let (cpu_s, cpu_us_per_op) = match s.cpu_ticks {
        Some(t) => {
            let cpu_s = t as f64 / ticks_per_second as f64;
            let per_op = if done > 0 { cpu_s * 1e6 / done as f64 } else { 0.0 };
            (format!("{cpu_s:.2}"), format!("{per_op:.1}"))
        }
        None => ("na".into(), "na".into()),
    };
    let lat = &s.latencies_us;
    let mean = if lat.is_empty() { 0 } else { lat.iter().map(|&v| u64::from(v)).sum::<u64>() / lat.len() as u64 };
    println!(
        "runtime={} op={} total={} concurrency={} value_size={} key_count={} errors={} elapsed_s={:.3} \
         ops_per_s={:.0} cpu_s={} cpu_us_per_op={} mean_us={} p50_us={} p99_us={} p999_us={} max_us={}",
        args.runtime.name(),
        args.op.name(),
        args.total,
        args.concurrency,
        args.value_size,
        args.key_count,
        s.errors,
        secs,
        ops_per_s,
        cpu_s,
        cpu_us_per_op,
        mean,
        percentile(lat, 0.50),
        percentile(lat, 0.99),
        percentile(lat, 0.999),
        lat.last().copied().unwrap_or(0),
    );
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if e.is_empty() {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let ticks_per_second = clock_ticks_per_second();

    let summary = match args.runtime {
        RuntimeKind::Tokio => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt.block_on(bench::<aetcd_tokio::Tokio>(&args)),
            Err(e) => Err(format!("cannot start the tokio runtime: {e}")),
        },
        RuntimeKind::Smol => smol::block_on(bench::<aetcd_smol::Smol>(&args)),
    };
    match summary {
        Ok(s) => {
            print_summary(&args, &s, ticks_per_second);
            if s.ok == 0 {
                eprintln!("loadgen: all {} operations failed", s.errors);
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
