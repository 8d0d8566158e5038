//! `loadgen`: drives one aetcd client with many concurrent get/put operations and
//! prints one line of throughput, CPU cost and latency figures.
//!
//! ```text
//! loadgen --endpoints URL[,URL..] --runtime tokio|smol --op get|put|mixed|watch \
//!         --total N --concurrency C [--value-size 256] [--key-count 1000]
//! loadgen --endpoints URL --runtime tokio|smol --op watch-scale --watches N [--concurrency C]
//! ```
//!
//! `watch`: one watch on the `bench/` prefix while C writers put N values; reports
//! events delivered per second and CPU per event. `watch-scale`: creates N watches
//! on one key (C creates in flight at a time), then measures the creation time, the
//! client's memory per watch (resident set growth) and the time one put takes to
//! reach all N.
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

const USAGE: &str = "usage: loadgen --endpoints URL[,URL..] --runtime tokio|smol --op get|put|mixed|watch \
                     --total N --concurrency C [--value-size 256] [--key-count 1000]\n       \
                     loadgen --endpoints URL --runtime tokio|smol --op watch-scale --watches N [--concurrency C]";

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
    Watch,
    WatchScale,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Mixed => "mixed",
            Op::Watch => "watch",
            Op::WatchScale => "watch-scale",
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
    watches: usize,
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
    let mut watches = 0;

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
                    "watch" => Op::Watch,
                    "watch-scale" => Op::WatchScale,
                    other => {
                        return Err(format!("--op: expected get, put, mixed, watch or watch-scale, got {other:?}"))
                    }
                })
            }
            "--total" => total = Some(parse_number::<u64>(&flag, &value()?)?),
            "--concurrency" => concurrency = Some(parse_number::<usize>(&flag, &value()?)?),
            "--value-size" => value_size = parse_number(&flag, &value()?)?,
            "--key-count" => key_count = parse_number(&flag, &value()?)?,
            "--watches" => watches = parse_number(&flag, &value()?)?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }

    let op = op.ok_or("--op is required")?;
    let scale = op == Op::WatchScale;
    let args = Args {
        endpoints: endpoints.ok_or("--endpoints is required")?,
        runtime: runtime.ok_or("--runtime is required")?,
        op,
        total: if scale { total.unwrap_or(1) } else { total.ok_or("--total is required")? },
        concurrency: if scale {
            concurrency.unwrap_or(1000)
        } else {
            concurrency.ok_or("--concurrency is required")?
        },
        value_size,
        key_count,
        watches,
    };
    if scale && args.watches == 0 {
        return Err("--op watch-scale needs --watches N".into());
    }
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
    let mut result =
        WorkerResult { latencies_us: Vec::with_capacity((plan.total / 8).min(1 << 20) as usize), errors: 0 };
    loop {
        let index = plan.next.fetch_add(1, Ordering::Relaxed);
        if index >= plan.total {
            return result;
        }
        let key = &plan.keys[rng.below(plan.keys.len())];
        let is_get = match plan.op {
            Op::Get => true,
            Op::Put | Op::Watch | Op::WatchScale => false,
            Op::Mixed => index % 2 == 0,
        };
        let started = Instant::now();
        let outcome = if is_get {
            match client.get(key.clone()).await {
                Ok(r) if r.kv().is_some_and(|kv| kv.value.len() == plan.value.len()) => Ok(()),
                Ok(r) => Err(format!(
                    "unexpected answer: {} key(s), value {:?} bytes",
                    r.kvs.len(),
                    r.kv().map(|kv| kv.value.len())
                )),
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
    /// Events delivered to the watch (`--op watch`).
    events: u64,
}

/// Connects, pre-loads, runs the measured phase and closes the client.
async fn bench<R: BenchRuntime>(args: &Args) -> Result<Summary, String> {
    let client = Client::<R>::connect(args.endpoints.clone()).await.map_err(|e| format!("connect failed: {e}"))?;

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

    // For `watch`, one watch on the prefix consumes, concurrently, what the writers produce.
    let consumer = match args.op {
        Op::Watch => {
            let mut w = client.watch_prefix("bench/").await.map_err(|e| format!("watch failed: {e}"))?;
            let total = args.total;
            Some(R::spawn_task(async move {
                let mut events = 0u64;
                while events < total {
                    match futures_util::StreamExt::next(&mut w).await {
                        Some(Ok(_)) => events += 1,
                        Some(Err(e)) => return Err(format!("watch failed after {events} events: {e}")),
                        None => return Err(format!("watch ended after {events} events")),
                    }
                }
                Ok(events)
            }))
        }
        _ => None,
    };

    let cpu_before = process_cpu_ticks();
    let started = Instant::now();
    let handles: Vec<Join<WorkerResult>> =
        (0..args.concurrency).map(|i| R::spawn_task(worker(client.clone(), plan.clone(), i as u64 + 1))).collect();
    let mut latencies_us = Vec::with_capacity(args.total as usize);
    let mut errors = 0;
    for h in handles {
        let mut r = h.await;
        errors += r.errors;
        latencies_us.append(&mut r.latencies_us);
    }
    let mut events = 0u64;
    if let Some(consumer) = consumer {
        if errors > 0 {
            return Err(format!("{errors} puts failed: the watch cannot be counted"));
        }
        events = consumer.await?;
    }
    let elapsed = started.elapsed();
    let cpu_ticks = cpu_before.zip(process_cpu_ticks()).map(|(a, b)| b.saturating_sub(a));

    client.close().await;
    latencies_us.sort_unstable();
    Ok(Summary { ok: latencies_us.len() as u64, errors, elapsed, cpu_ticks, latencies_us, events })
}

/// The resident set size of this process, in KiB.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `watch-scale`: N watches on one key, created C at a time; then one put.
async fn watch_scale<R: BenchRuntime>(args: &Args) -> Result<(), String> {
    let client = Client::<R>::builder()
        .endpoints(args.endpoints.clone())
        .request_timeout(Duration::from_secs(120))
        .connect()
        .await
        .map_err(|e| format!("connect failed: {e}"))?;
    client.put("scale/key", "0").await.map_err(|e| format!("put failed: {e}"))?;
    let n = args.watches;
    let rss_before = rss_kib();
    let cpu_before = process_cpu_ticks();
    let started = Instant::now();
    let mut watchers = Vec::with_capacity(n);
    while watchers.len() < n {
        let batch = args.concurrency.min(n - watchers.len());
        let created = futures_util::future::join_all((0..batch).map(|_| client.watch("scale/key"))).await;
        for w in created {
            watchers.push(w.map_err(|e| format!("watch {} failed: {e}", watchers.len()))?);
        }
    }
    let create = started.elapsed();
    let cpu_create = cpu_before.zip(process_cpu_ticks()).map(|(a, b)| b.saturating_sub(a));
    let rss_after = rss_kib();

    let put_at = Instant::now();
    client.put("scale/key", "1").await.map_err(|e| format!("put failed: {e}"))?;
    let received = futures_util::future::join_all(watchers.iter_mut().map(futures_util::StreamExt::next)).await;
    let fanout = put_at.elapsed();
    let missing = received.iter().filter(|r| !matches!(r, Some(Ok(_)))).count();

    let per_watch = rss_before.zip(rss_after).map(|(b, a)| (a.saturating_sub(b) * 1024) as f64 / n as f64);
    let ticks = clock_ticks_per_second() as f64;
    println!(
        "runtime={} op=watch-scale watches={n} concurrency={} create_s={:.3} creates_per_s={:.0} \
         create_cpu_s={} rss_before_kib={} rss_after_kib={} client_bytes_per_watch={} fanout_ms={:.1} missing={missing}",
        args.runtime.name(),
        args.concurrency,
        create.as_secs_f64(),
        n as f64 / create.as_secs_f64(),
        cpu_create.map_or("na".into(), |t| format!("{:.2}", t as f64 / ticks)),
        rss_before.map_or("na".into(), |v| v.to_string()),
        rss_after.map_or("na".into(), |v| v.to_string()),
        per_watch.map_or("na".into(), |v| format!("{v:.0}")),
        fanout.as_secs_f64() * 1e3,
    );
    drop(watchers);
    client.close().await;
    if missing > 0 {
        return Err(format!("{missing} of {n} watches did not receive the put"));
    }
    Ok(())
}

fn print_summary(args: &Args, s: &Summary, ticks_per_second: u64) {
    let secs = s.elapsed.as_secs_f64();
    // For `watch` the unit of work is a delivered event.
    let done = if args.op == Op::Watch { s.events } else { s.ok + s.errors };
    let ops_per_s = if secs > 0.0 { (if args.op == Op::Watch { s.events } else { s.ok }) as f64 / secs } else { 0.0 };
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
    if args.op == Op::WatchScale {
        let r = match args.runtime {
            RuntimeKind::Tokio => match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
                Ok(rt) => rt.block_on(watch_scale::<aetcd_tokio::Tokio>(&args)),
                Err(e) => Err(format!("cannot start the tokio runtime: {e}")),
            },
            RuntimeKind::Smol => smol::block_on(watch_scale::<aetcd_smol::Smol>(&args)),
        };
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::FAILURE
            }
        };
    }

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
