//! Shared integration-test harness for Qala.
//!
//! It starts real servers as child processes, each in its own temporary directory and on its own
//! free port on 127.0.0.1: Mosquitto (the MQTT broker the gateway reads from), VictoriaMetrics
//! (the InfluxDB-v2-compatible store the gateway writes to) and the `qala` gateway itself. It also
//! drives the Debian MQTT clients (`mosquitto_pub`, `mosquitto_sub`) and reads back what landed:
//! VictoriaMetrics exports, Prometheus text metrics, SQLite files.
//!
//! Everything is blocking and std-only. A server is stopped by PID when its handle is dropped
//! (SIGTERM, up to 5 s, then SIGKILL, then reaped); when the drop happens during a panic, the tail
//! of its log is printed so that a failing test shows what the server said. A missing binary is a
//! loud panic, never a skipped test: `scripts/test.sh` installs the Debian packages.
//!
//! The traps these helpers work around are listed in `shared/TESTING.md` (Mosquitto 2.0.11 and
//! VictoriaMetrics 1.79.5 as packaged by Debian bookworm).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How many log lines a server prints when it is dropped during a panic.
const PANIC_LOG_LINES: usize = 60;
/// How long a dropped server gets between SIGTERM and SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// How long an explicit stop or restart waits for a clean exit (persistence is written then).
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long a server gets to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot client (`mosquitto_pub`) may run.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------------------

/// Ports already handed out by this process, so that two tests never get the same one.
static USED_PORTS: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
/// Makes client ids and poll matchers unique within the process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_id() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A free TCP port on 127.0.0.1: binds port 0, reads the port the kernel chose, closes the socket.
/// Never returns the same port twice within one process.
pub fn free_port() -> u16 {
    let mut used = USED_PORTS.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 to find a free port");
        let port = listener
            .local_addr()
            .expect("reading the local address of a bound socket")
            .port();
        drop(listener);
        if used.insert(port) {
            return port;
        }
    }
    panic!("free_port: the kernel kept handing out ports this process already used");
}

/// Calls `f` every 50 ms until it returns true; panics naming `what` when `timeout` passes first.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of a text file (lossy UTF-8); a note instead when it cannot be read.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn tail_block(path: &Path, lines: usize) -> String {
    format!(
        "\n----- last {lines} lines of {} -----\n{}\n----- end of {} -----",
        path.display(),
        file_tail(path, lines),
        path.display()
    )
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The text appended to `path` after byte `offset`.
fn file_text_since(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Finds an executable on PATH or in the sbin folders (Debian puts `mosquitto` in /usr/sbin,
/// which is not on every PATH). Panics loudly when it is missing.
fn find_binary(name: &str) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} not found: run scripts/test.sh, which installs the Debian packages \
         (mosquitto, mosquitto-clients, victoria-metrics)"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening log file {}: {e}", path.display()))
}

fn send_signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("child PID fits in pid_t");
    // SAFETY: kill(2) only sends a signal; the PID is that of our own child, which has not been
    // reaped yet (callers check try_wait first), so it cannot name a recycled process.
    unsafe {
        libc::kill(pid, signal);
    }
}

/// Waits for `child` to exit for up to `timeout`; `None` when it is still running.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for child process {}: {e}", child.id()),
        }
        if start.elapsed() >= timeout {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL; always reaps. Returns the exit status and whether
/// it had to be killed.
fn terminate_child(child: &mut Child, grace: Duration) -> (ExitStatus, bool) {
    if let Ok(Some(status)) = child.try_wait() {
        return (status, false);
    }
    send_signal(child, libc::SIGTERM);
    if let Some(status) = wait_timeout(child, grace) {
        return (status, false);
    }
    let _ = child.kill(); // SIGKILL
    let status = child
        .wait()
        .unwrap_or_else(|e| panic!("reaping killed child {}: {e}", child.id()));
    (status, true)
}

/// Reads a child's stderr to the end on a thread, so the pipe never fills.
fn collect_stderr(stderr: ChildStderr) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = BufReader::new(stderr).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

fn http_client(timeout: Duration) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy() // everything is on 127.0.0.1; a CI proxy must not see it
        .timeout(timeout)
        .build()
        .expect("building the HTTP client")
}

// ---------------------------------------------------------------------------------------------
// A child process that is a server with a log file
// ---------------------------------------------------------------------------------------------

/// One running server process. Stopped (SIGTERM, then SIGKILL) and reaped on drop.
struct ServerProcess {
    name: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Spawns `command` with stdout and stderr appended to `log_path`.
    fn spawn(name: &'static str, mut command: Command, log_path: &Path) -> ServerProcess {
        let log = open_log(log_path);
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating log file handle for {name}: {e}"));
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name} ({command:?}): {e}"));
        ServerProcess {
            name,
            child: Some(child),
            log_path: log_path.to_path_buf(),
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` once the process has exited (it is then reaped).
    fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child
            .try_wait()
            .unwrap_or_else(|e| panic!("checking whether {} is running: {e}", self.name))
    }

    fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    /// SIGTERM, up to `grace`, then SIGKILL. `None` when there was no process.
    fn terminate(&mut self, grace: Duration) -> Option<(ExitStatus, bool)> {
        let mut child = self.child.take()?;
        Some(terminate_child(&mut child, grace))
    }

    /// SIGKILL and reap. `None` when there was no process.
    fn kill9(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = child.kill();
        Some(
            child
                .wait()
                .unwrap_or_else(|e| panic!("reaping {} after SIGKILL: {e}", self.name)),
        )
    }

    fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_path, lines)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_none() {
            return;
        }
        // Read the log before stopping, so that shutdown chatter does not push out what the
        // server said while the test ran.
        let tail = thread::panicking().then(|| tail_block(&self.log_path, PANIC_LOG_LINES));
        let _ = self.terminate(DROP_GRACE);
        if let Some(tail) = tail {
            eprintln!("{} (stopped because the test panicked):{tail}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Mosquitto
// ---------------------------------------------------------------------------------------------

/// Settings of a harness Mosquitto that tests may want to change.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Per-client window of unacknowledged QoS 1/2 messages (Mosquitto's default is 20).
    pub max_inflight_messages: u32,
    /// Per-client queue beyond which Mosquitto silently drops QoS 1/2 messages for a slow or
    /// offline session. High by default so that tests never lose messages to it by accident.
    pub max_queued_messages: u32,
    /// Whether sessions and queued messages survive a restart (written to DIR/mosquitto.db).
    pub persistence: bool,
}

impl Default for MosquittoOptions {
    fn default() -> Self {
        MosquittoOptions {
            max_inflight_messages: 20,
            max_queued_messages: 1_000_000,
            persistence: true,
        }
    }
}

/// A Mosquitto broker of our own on a free port of 127.0.0.1 (never the system one on 1883).
pub struct Mosquitto {
    pub port: u16,
    pub options: MosquittoOptions,
    process: ServerProcess,
    config_path: PathBuf,
    log_path: PathBuf,
    // Last field: the directory is removed only after the process has been stopped.
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker with the default options.
    pub fn start() -> Mosquitto {
        Mosquitto::start_with(MosquittoOptions::default())
    }

    /// Starts a broker with `options`; returns once it accepts connections.
    pub fn start_with(options: MosquittoOptions) -> Mosquitto {
        let binary = find_binary("mosquitto");
        let dir = tempfile::Builder::new()
            .prefix("qala-mosquitto-")
            .tempdir()
            .expect("creating a temp dir for Mosquitto");
        let config_path = dir.path().join("mosquitto.conf");
        let log_path = dir.path().join("mosquitto.log");
        // A port that was free a moment ago can be taken by someone else before the broker
        // binds it: then try another one.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            write_mosquitto_config(&config_path, dir.path(), &log_path, port, &options);
            let log_offset = file_len(&log_path);
            let mut process = ServerProcess::spawn(
                "mosquitto",
                mosquitto_command(&binary, &config_path),
                &log_path,
            );
            match wait_mosquitto_ready(&mut process, port, &log_path, log_offset) {
                Ok(()) => {
                    return Mosquitto {
                        port,
                        options,
                        process,
                        config_path,
                        log_path,
                        dir,
                    }
                }
                Err(why) => {
                    process.terminate(DROP_GRACE);
                    let new_log = file_text_since(&log_path, log_offset);
                    if !new_log.contains("Address already in use") {
                        panic!(
                            "Mosquitto did not start on port {port}: {why}{}",
                            tail_block(&log_path, 40)
                        );
                    }
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        panic!(
            "Mosquitto did not start after 3 tries: {failures:?}{}",
            tail_block(&log_path, 40)
        );
    }

    /// `mqtt://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The broker's own directory (config, log, persistence db).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the broker with SIGTERM (it then writes its persistence db), waits for it to exit,
    /// and starts it again on the same port with the same directory.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGTERM and wait (up to 30 s) for a clean exit; the persistence db is written then.
    /// Panics when it had to be killed or exited with an error.
    pub fn stop(&mut self) {
        if let Some((status, killed)) = self.process.terminate(STOP_GRACE) {
            if killed {
                panic!(
                    "Mosquitto did not exit within {STOP_GRACE:?} of SIGTERM; killed it{}",
                    tail_block(&self.log_path, 40)
                );
            }
            assert!(
                status.success(),
                "Mosquitto exited with {status} on SIGTERM{}",
                tail_block(&self.log_path, 40)
            );
        }
    }

    /// Starts the broker again on the same port and directory after `stop()`.
    pub fn start_again(&mut self) {
        assert!(
            !self.process.is_running(),
            "Mosquitto::start_again called while it is running"
        );
        let binary = find_binary("mosquitto");
        let log_offset = file_len(&self.log_path);
        let mut process = ServerProcess::spawn(
            "mosquitto",
            mosquitto_command(&binary, &self.config_path),
            &self.log_path,
        );
        if let Err(why) = wait_mosquitto_ready(&mut process, self.port, &self.log_path, log_offset)
        {
            process.terminate(DROP_GRACE);
            panic!(
                "Mosquitto did not start again on port {}: {why}{}",
                self.port,
                tail_block(&self.log_path, 40)
            );
        }
        self.process = process;
    }

    /// SIGKILL (no persistence written) and reap. `start_again()` brings it back.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// How many times a subscription to exactly `topic_filter` has been made on this broker, by
    /// any client, since it first started (read from its log, which records every SUBSCRIBE).
    /// Waiting for this to grow is how a test knows a subscriber it started elsewhere is live.
    pub fn subscription_count(&self, topic_filter: &str) -> usize {
        let text = file_text_since(&self.log_path, 0);
        let suffix = format!(" {topic_filter}");
        text.lines()
            .filter(|line| {
                // "<timestamp>: <client id> <qos> <topic filter>"
                line.strip_suffix(&suffix).is_some_and(|head| {
                    head.rsplit(' ')
                        .next()
                        .is_some_and(|qos| matches!(qos, "0" | "1" | "2"))
                })
            })
            .count()
    }

    /// Waits until `subscription_count(topic_filter)` exceeds `before`.
    pub fn wait_for_subscription(&self, topic_filter: &str, before: usize, timeout: Duration) {
        wait_until(
            &format!(
                "a subscription to {topic_filter:?} on Mosquitto port {}",
                self.port
            ),
            timeout,
            || self.subscription_count(topic_filter) > before,
        );
    }
}

fn mosquitto_command(binary: &Path, config_path: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("-c").arg(config_path);
    command
}

fn write_mosquitto_config(
    config_path: &Path,
    dir: &Path,
    log_path: &Path,
    port: u16,
    options: &MosquittoOptions,
) {
    let mut config = format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         persistence {persistence}\n\
         persistence_location {dir}/\n\
         max_inflight_messages {inflight}\n\
         max_queued_messages {queued}\n\
         log_dest file {log}\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         log_type subscribe\n\
         log_type unsubscribe\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n",
        persistence = options.persistence,
        dir = dir.display(),
        inflight = options.max_inflight_messages,
        queued = options.max_queued_messages,
        log = log_path.display(),
    );
    if is_root() {
        // Otherwise Mosquitto switches to user `mosquitto` and cannot write DIR.
        config.push_str("user root\n");
    }
    fs::write(config_path, config)
        .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
}

/// Ready = the process says "running" in its log (after `log_offset`) and a TCP connect works.
/// Checking the log first means a stranger's server on the same port cannot fool us.
fn wait_mosquitto_ready(
    process: &mut ServerProcess,
    port: u16,
    log_path: &Path,
    log_offset: u64,
) -> Result<(), String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Some(status) = process.exit_status() {
            return Err(format!("mosquitto exited with {status} during startup"));
        }
        let running = file_text_since(log_path, log_offset).contains(" running");
        if running && TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!("not ready within {START_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Mosquitto's command-line clients
// ---------------------------------------------------------------------------------------------

/// One received MQTT message: (topic, payload).
pub type Message = (String, Vec<u8>);

/// Publishes one message with `mosquitto_pub` and asserts it exited 0. The payload goes through
/// stdin (`-s`) so any bytes work; an empty payload is sent with `-n`.
pub fn mosquitto_pub(port: u16, topic: &str, payload: &[u8], qos: u8) {
    let binary = find_binary("mosquitto_pub");
    let mut command = Command::new(&binary);
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
        ])
        .args(["-t", topic])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if payload.is_empty() {
        command.arg("-n").stdin(Stdio::null());
    } else {
        command.arg("-s").stdin(Stdio::piped());
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawning mosquitto_pub: {e}"));
    let stderr = collect_stderr(child.stderr.take().expect("mosquitto_pub stderr is piped"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(payload)
            .unwrap_or_else(|e| panic!("writing the payload to mosquitto_pub's stdin: {e}"));
    } // dropping stdin closes it: mosquitto_pub -s then sends
    let Some(status) = wait_timeout(&mut child, CLIENT_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "mosquitto_pub to {topic:?} on port {port} did not finish within {CLIENT_TIMEOUT:?}; \
             stderr: {}",
            stderr.join().unwrap_or_default()
        );
    };
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "mosquitto_pub to {topic:?} on port {port} (QoS {qos}) exited with {status}; stderr: {stderr}"
    );
}

/// `mosquitto_pub -l` to `topic`, with its stdin (one message per line) and its stderr collector.
fn spawn_pub_lines(
    port: u16,
    topic: &str,
    qos: u8,
) -> (Child, std::process::ChildStdin, JoinHandle<String>) {
    let binary = find_binary("mosquitto_pub");
    let mut child = Command::new(&binary)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            &qos.to_string(),
        ])
        .args(["-t", topic, "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning mosquitto_pub -l: {e}"));
    let stderr = collect_stderr(child.stderr.take().expect("mosquitto_pub stderr is piped"));
    let stdin = child.stdin.take().expect("mosquitto_pub stdin is piped");
    (child, stdin, stderr)
}

/// Publishes each line as one message with `mosquitto_pub -l`. Works around the Mosquitto
/// 2.0.11 trap where `mosquitto_pub -q 1 -l` loses messages when its stdin ends early (the
/// broker disconnects it at EOF while messages are still in flight, and it still exits 0): after
/// writing all lines, stdin stays open until `keep_open_until()` returns true (e.g. "the
/// subscriber has everything") or `timeout` passes; then stdin is closed and the exit status
/// must be 0. Lines must not contain '\n'.
pub fn mosquitto_pub_lines(
    port: u16,
    topic: &str,
    lines: &[String],
    qos: u8,
    mut keep_open_until: impl FnMut() -> bool,
    timeout: Duration,
) {
    let start = Instant::now();
    let (mut child, stdin, stderr) = spawn_pub_lines(port, topic, qos);
    let mut writer = std::io::BufWriter::with_capacity(1 << 16, stdin);
    let mut write_result = Ok(());
    for line in lines {
        assert!(
            !line.contains('\n'),
            "mosquitto_pub_lines: a line contains a newline: {line:?}"
        );
        write_result = writer
            .write_all(line.as_bytes())
            .and_then(|()| writer.write_all(b"\n"));
        if write_result.is_err() {
            break;
        }
    }
    if write_result.is_ok() {
        write_result = writer.flush();
    }
    if let Err(e) = write_result {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "writing lines to mosquitto_pub -l on port {port} failed: {e}; stderr: {}",
            stderr.join().unwrap_or_default()
        );
    }
    // Keep stdin open until the caller has what it waits for (or mosquitto_pub died).
    loop {
        if keep_open_until() || start.elapsed() >= timeout {
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    drop(writer); // closes stdin: mosquitto_pub then disconnects and exits
    let Some(status) = wait_timeout(&mut child, CLIENT_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "mosquitto_pub -l on port {port} did not exit within {CLIENT_TIMEOUT:?} of closing \
             its stdin; stderr: {}",
            stderr.join().unwrap_or_default()
        );
    };
    let stderr = stderr.join().unwrap_or_default();
    assert!(
        status.success(),
        "mosquitto_pub -l to {topic:?} on port {port} (QoS {qos}) exited with {status}; stderr: {stderr}"
    );
}

/// A `mosquitto_pub -l` fed at a steady rate from a thread: a stream that is still flowing while
/// a test stops or kills things. Stdin stays open after the last line until [`PacedPublisher::finish`]
/// (the Mosquitto 2.0.11 EOF trap, see [`mosquitto_pub_lines`]).
pub struct PacedPublisher {
    sent: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

impl PacedPublisher {
    /// Starts publishing `lines` to `topic` at about `rate` messages per second.
    pub fn start(port: u16, topic: &str, lines: Vec<String>, qos: u8, rate: u32) -> PacedPublisher {
        let sent = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let (mut child, stdin, stderr) = spawn_pub_lines(port, topic, qos);
        let (sent2, done2) = (sent.clone(), done.clone());
        let thread = thread::spawn(move || {
            let mut writer = std::io::BufWriter::with_capacity(1 << 16, stdin);
            let start = Instant::now();
            let chunk = (rate / 50).max(1) as usize; // 50 writes per second
            let mut written = 0usize;
            for block in lines.chunks(chunk) {
                for line in block {
                    writer
                        .write_all(line.as_bytes())
                        .and_then(|()| writer.write_all(b"\n"))
                        .map_err(|e| format!("writing to mosquitto_pub: {e}"))?;
                }
                writer
                    .flush()
                    .map_err(|e| format!("writing to mosquitto_pub: {e}"))?;
                written += block.len();
                sent2.store(written as u64, Ordering::Release);
                let due = Duration::from_secs_f64(written as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    thread::sleep(wait);
                }
            }
            while !done2.load(Ordering::Acquire) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "mosquitto_pub exited early with {status}: {}",
                        stderr.join().unwrap_or_default()
                    ));
                }
                thread::sleep(Duration::from_millis(50));
            }
            drop(writer);
            let status = wait_timeout(&mut child, CLIENT_TIMEOUT).ok_or_else(|| {
                let _ = child.kill();
                "mosquitto_pub did not exit after its stdin closed".to_string()
            })?;
            if status.success() {
                Ok(())
            } else {
                Err(format!(
                    "mosquitto_pub exited with {status}: {}",
                    stderr.join().unwrap_or_default()
                ))
            }
        });
        PacedPublisher {
            sent,
            done,
            thread: Some(thread),
        }
    }

    /// Lines handed to mosquitto_pub so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Acquire)
    }

    /// Closes stdin once everything was written and `until()` holds (or `timeout` passes), and
    /// checks that mosquitto_pub exited cleanly.
    pub fn finish(mut self, total: u64, mut until: impl FnMut() -> bool, timeout: Duration) {
        let start = Instant::now();
        while (self.sent() < total || !until()) && start.elapsed() < timeout {
            thread::sleep(Duration::from_millis(100));
        }
        self.done.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("paced publisher: {e}"),
                Err(_) => panic!("paced publisher thread panicked"),
            }
        }
    }
}

impl Drop for PacedPublisher {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}

/// Resident set size of a process, bytes (from /proc/PID/status).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How a `MosquittoSub` connects and subscribes.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Subscription QoS (the delivered QoS is the lower of this and the publisher's).
    pub qos: u8,
    /// Client id; a unique `qala-harness-sub-…` one when `None`.
    pub client_id: Option<String>,
    /// `false` = persistent session (`mosquitto_sub -c`): the broker keeps the subscription and
    /// queues QoS 1/2 messages while the client is away.
    pub clean_session: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            qos: 1,
            client_id: None,
            clean_session: true,
        }
    }
}

/// A running `mosquitto_sub` collecting `(topic, payload)` pairs. `start` returns only once the
/// subscription is live (a probe message on a private `$qala-harness/…` topic, which no wildcard
/// matches, has come back through it), so messages published afterwards are not missed.
pub struct MosquittoSub {
    pub port: u16,
    pub topic: String,
    pub client_id: String,
    child: Option<Child>,
    messages: Arc<Mutex<Vec<Message>>>,
    reader: Option<JoinHandle<Result<(), String>>>,
    stderr: Option<JoinHandle<String>>,
}

impl MosquittoSub {
    /// Subscribes to `topic` at QoS 1 with a clean session.
    pub fn start(port: u16, topic: &str) -> MosquittoSub {
        MosquittoSub::start_with(port, topic, &SubscribeOptions::default())
    }

    pub fn start_with(port: u16, topic: &str, options: &SubscribeOptions) -> MosquittoSub {
        let binary = find_binary("mosquitto_sub");
        let client_id = options
            .client_id
            .clone()
            .unwrap_or_else(|| format!("qala-harness-sub-{}-{}", std::process::id(), next_id()));
        let probe_topic = format!("$qala-harness/probe/{client_id}");
        let mut command = Command::new(&binary);
        command
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-q", &options.qos.to_string(), "-i", &client_id])
            .args(["-t", topic, "-t", &probe_topic])
            // topic, payload length, raw payload: binary payloads and newlines survive.
            .args(["-F", "%t\\n%l\\n%p"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !options.clean_session {
            command.arg("-c");
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawning mosquitto_sub: {e}"));
        let stdout = child.stdout.take().expect("mosquitto_sub stdout is piped");
        let stderr = collect_stderr(child.stderr.take().expect("mosquitto_sub stderr is piped"));
        let messages = Arc::new(Mutex::new(Vec::new()));
        let probe_seen = Arc::new(AtomicBool::new(false));
        let reader = {
            let messages = Arc::clone(&messages);
            let probe_seen = Arc::clone(&probe_seen);
            let probe_topic = probe_topic.clone();
            thread::spawn(move || read_sub_output(stdout, &probe_topic, &probe_seen, &messages))
        };
        let mut sub = MosquittoSub {
            port,
            topic: topic.to_string(),
            client_id,
            child: Some(child),
            messages,
            reader: Some(reader),
            stderr: Some(stderr),
        };
        // Publish probes until one comes back through the new subscription.
        let start = Instant::now();
        while !probe_seen.load(Ordering::SeqCst) {
            if let Some(child) = sub.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let stderr = sub.stderr.take().map(|h| h.join().unwrap_or_default());
                    panic!(
                        "mosquitto_sub on port {port} for {topic:?} exited with {status} before \
                         subscribing; stderr: {}",
                        stderr.unwrap_or_default()
                    );
                }
            }
            if start.elapsed() > Duration::from_secs(15) {
                panic!(
                    "mosquitto_sub on port {port} for {topic:?}: subscription not live after 15 s"
                );
            }
            mosquitto_pub(port, &probe_topic, b"probe", 0);
            let wait_from = Instant::now();
            while !probe_seen.load(Ordering::SeqCst)
                && wait_from.elapsed() < Duration::from_millis(200)
            {
                thread::sleep(Duration::from_millis(5));
            }
        }
        sub
    }

    /// How many messages have arrived so far (probes excluded).
    pub fn received(&self) -> usize {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// A copy of the messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until at least `count` messages arrived or `timeout` passed; returns whether
    /// `count` was reached. Never panics on timeout: the caller asserts with its own message.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.received() >= count {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Disconnects (SIGTERM: mosquitto_sub disconnects cleanly) and returns everything received.
    pub fn stop(mut self) -> Vec<Message> {
        self.shutdown();
        self.messages()
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate_child(&mut child, DROP_GRACE);
        }
        if let Some(reader) = self.reader.take() {
            match reader.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if !thread::panicking() {
                        panic!("reading mosquitto_sub output: {e}");
                    }
                }
                Err(_) => {
                    if !thread::panicking() {
                        panic!("the mosquitto_sub reader thread panicked");
                    }
                }
            }
        }
        if let Some(stderr) = self.stderr.take() {
            let _ = stderr.join();
        }
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Parses `mosquitto_sub -F '%t\n%l\n%p'` output: per message a topic line, a length line,
/// `length` raw payload bytes and a newline.
fn read_sub_output(
    stdout: std::process::ChildStdout,
    probe_topic: &str,
    probe_seen: &AtomicBool,
    messages: &Mutex<Vec<Message>>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 16, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading the topic: {e}"))?;
        if n == 0 {
            return Ok(()); // EOF: mosquitto_sub exited
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let topic = String::from_utf8_lossy(&line).into_owned();
        let mut len_line = String::new();
        reader
            .read_line(&mut len_line)
            .map_err(|e| format!("reading the payload length after topic {topic:?}: {e}"))?;
        let len: usize = len_line
            .trim_end()
            .parse()
            .map_err(|e| format!("bad payload length {len_line:?} after topic {topic:?}: {e}"))?;
        let mut payload = vec![0u8; len + 1]; // + the newline mosquitto_sub adds
        reader
            .read_exact(&mut payload)
            .map_err(|e| format!("reading a {len}-byte payload on {topic:?}: {e}"))?;
        payload.pop();
        if topic == probe_topic {
            probe_seen.store(true, Ordering::SeqCst);
        } else {
            messages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((topic, payload));
        }
    }
}

/// Subscribes to `topic` (QoS 1, clean session) and returns the first `count` messages that
/// arrive within `timeout` (fewer on timeout: assert on the length), like
/// `mosquitto_sub -v -C count -W secs`. It subscribes when called: when it runs on another
/// thread, wait with `Mosquitto::wait_for_subscription` before publishing, or use
/// `MosquittoSub::start`, which returns once the subscription is live.
pub fn mosquitto_sub_collect(
    port: u16,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<Message> {
    let start = Instant::now();
    let sub = MosquittoSub::start(port, topic);
    sub.wait_for(count, timeout.saturating_sub(start.elapsed()));
    let mut messages = sub.stop();
    messages.truncate(count);
    messages
}

// ---------------------------------------------------------------------------------------------
// VictoriaMetrics
// ---------------------------------------------------------------------------------------------

/// One exported series: its labels (with `__name__`) and its samples.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Series {
    #[serde(rename = "metric")]
    pub labels: BTreeMap<String, String>,
    pub values: Vec<f64>,
    /// Milliseconds since the epoch.
    pub timestamps: Vec<i64>,
}

/// Distinct (series labels, timestamp) pairs. VictoriaMetrics keeps duplicate points (InfluxDB
/// keeps the last one), so "exactly once" checks must count these, not raw samples.
pub fn distinct_points(series: &[Series]) -> usize {
    let mut seen = HashSet::new();
    for s in series {
        for &ts in &s.timestamps {
            seen.insert((&s.labels, ts));
        }
    }
    seen.len()
}

/// A VictoriaMetrics single-node server on a free port of 127.0.0.1, in its own data dir.
pub struct VictoriaMetrics {
    pub port: u16,
    process: ServerProcess,
    client: reqwest::blocking::Client,
    log_path: PathBuf,
    // Last field: the directory is removed only after the process has been stopped.
    dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Starts it with the flags of TESTING.md; returns once `GET /health` answers `OK`.
    pub fn start() -> VictoriaMetrics {
        let binary = find_binary("victoria-metrics");
        let dir = tempfile::Builder::new()
            .prefix("qala-victoria-metrics-")
            .tempdir()
            .expect("creating a temp dir for VictoriaMetrics");
        let log_path = dir.path().join("victoria-metrics.log");
        let client = http_client(Duration::from_secs(30));
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let log_offset = file_len(&log_path);
            let mut process = ServerProcess::spawn(
                "victoria-metrics",
                vm_command(&binary, port, dir.path()),
                &log_path,
            );
            match wait_vm_ready(&mut process, &client, port) {
                Ok(()) => {
                    return VictoriaMetrics {
                        port,
                        process,
                        client,
                        log_path,
                        dir,
                    }
                }
                Err(why) => {
                    process.terminate(DROP_GRACE);
                    let new_log = file_text_since(&log_path, log_offset);
                    if !new_log.contains("address already in use") {
                        panic!(
                            "VictoriaMetrics did not start on port {port}: {why}{}",
                            tail_block(&log_path, 40)
                        );
                    }
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        panic!(
            "VictoriaMetrics did not start after 3 tries: {failures:?}{}",
            tail_block(&log_path, 40)
        );
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGTERM and wait (up to 30 s) for a clean exit. Panics when it had to be killed.
    pub fn stop(&mut self) {
        if let Some((status, killed)) = self.process.terminate(STOP_GRACE) {
            if killed {
                panic!(
                    "VictoriaMetrics did not exit within {STOP_GRACE:?} of SIGTERM; killed it{}",
                    tail_block(&self.log_path, 40)
                );
            }
            assert!(
                status.success(),
                "VictoriaMetrics exited with {status} on SIGTERM{}",
                tail_block(&self.log_path, 40)
            );
        }
    }

    /// SIGKILL and reap (an abrupt outage). `start_again()` brings it back.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Starts it again after `stop()`/`kill9()`: same port, same data dir.
    pub fn start_again(&mut self) {
        assert!(
            !self.process.is_running(),
            "VictoriaMetrics::start_again called while it is running"
        );
        let binary = find_binary("victoria-metrics");
        let mut process = ServerProcess::spawn(
            "victoria-metrics",
            vm_command(&binary, self.port, self.dir.path()),
            &self.log_path,
        );
        if let Err(why) = wait_vm_ready(&mut process, &self.client, self.port) {
            process.terminate(DROP_GRACE);
            panic!(
                "VictoriaMetrics did not start again on port {}: {why}{}",
                self.port,
                tail_block(&self.log_path, 40)
            );
        }
        self.process = process;
    }

    /// Makes recently written points searchable at once (`GET /internal/force_flush`).
    pub fn force_flush(&self) {
        let url = format!("{}/internal/force_flush", self.url());
        let response = self
            .client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}{}", tail_block(&self.log_path, 20)));
        assert!(
            response.status().is_success(),
            "GET {url} answered {}{}",
            response.status(),
            tail_block(&self.log_path, 20)
        );
    }

    /// All samples of the series matching `selector` (e.g. `{__name__="air_pm2_5",sensor_id="s1"}`),
    /// from the epoch on: `GET /api/v1/export?match[]=SELECTOR&start=0&end=NOW+3d`. The explicit
    /// `end` matters: VictoriaMetrics accepts points up to 2 days in the future but its export
    /// stops at "now" by default, which would hide them.
    pub fn export(&self, selector: &str) -> Vec<Series> {
        let url = format!("{}/api/v1/export", self.url());
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs()
            + 3 * 86_400;
        let end = end.to_string();
        let response = self
            .client
            .get(&url)
            .query(&[("match[]", selector), ("start", "0"), ("end", end.as_str())])
            .send()
            .unwrap_or_else(|e| {
                panic!(
                    "GET {url} for {selector}: {e}{}",
                    tail_block(&self.log_path, 20)
                )
            });
        let status = response.status();
        let body = response
            .text()
            .unwrap_or_else(|e| panic!("reading the export of {selector}: {e}"));
        assert!(
            status.is_success(),
            "export of {selector} answered {status}: {body}"
        );
        body.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("export of {selector}: cannot parse line {line:?}: {e}")
                })
            })
            .collect()
    }

    /// Force-flushes, then polls `export(selector)` until it holds at least `n` distinct
    /// (series, timestamp) points; returns that export. Each poll adds a unique dummy matcher
    /// (`__qala_poll__!="N"`), because VictoriaMetrics caches an empty answer for ~10 s.
    /// Panics with what it saw and the server log on timeout.
    pub fn wait_for_samples(&self, selector: &str, n: usize, timeout: Duration) -> Vec<Series> {
        let start = Instant::now();
        self.force_flush();
        loop {
            let series = self.export(&with_poll_matcher(selector, next_id()));
            let points = distinct_points(&series);
            if points >= n {
                return series;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {n} points of {selector} in \
                     VictoriaMetrics: {points} found in {} series: {series:?}{}",
                    series.len(),
                    tail_block(&self.log_path, 20)
                );
            }
            thread::sleep(Duration::from_millis(100));
            if start.elapsed() > Duration::from_secs(2) {
                self.force_flush();
            }
        }
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

fn vm_command(binary: &Path, port: u16, dir: &Path) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-storageDataPath={}", dir.join("data").display()))
        .arg("-retentionPeriod=100y")
        .arg("-search.latencyOffset=0s")
        .arg("-search.disableCache")
        .arg("-memory.allowedBytes=512MiB");
    command
}

/// Ready = `GET /health` answers `OK` and our process is still the one running.
fn wait_vm_ready(
    process: &mut ServerProcess,
    client: &reqwest::blocking::Client,
    port: u16,
) -> Result<(), String> {
    let start = Instant::now();
    let url = format!("http://127.0.0.1:{port}/health");
    loop {
        if let Some(status) = process.exit_status() {
            return Err(format!(
                "victoria-metrics exited with {status} during startup"
            ));
        }
        let healthy = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
            .and_then(|r| r.text().ok())
            .is_some_and(|body| body.trim() == "OK");
        if healthy && process.exit_status().is_none() {
            return Ok(());
        }
        if start.elapsed() > START_TIMEOUT {
            return Err(format!("/health not OK within {START_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Adds `__qala_poll__!="N"` to a series selector: `{a="b"}` → `{a="b",__qala_poll__!="N"}`,
/// `name` → `name{__qala_poll__!="N"}`.
fn with_poll_matcher(selector: &str, n: u64) -> String {
    let matcher = format!("__qala_poll__!=\"{n}\"");
    let selector = selector.trim();
    match selector.strip_suffix('}') {
        Some(body) => {
            let inner = body.trim_end();
            if inner.ends_with('{') || inner.ends_with(',') {
                format!("{body}{matcher}}}")
            } else {
                format!("{body},{matcher}}}")
            }
        }
        None => format!("{selector}{{{matcher}}}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway
// ---------------------------------------------------------------------------------------------

/// Path of the `qala` binary Cargo built for these tests.
pub fn qala_bin() -> &'static str {
    env!("CARGO_BIN_EXE_qala")
}

/// A running `qala run` in a directory the caller owns (so a test can start it again on the
/// same spool after `kill9` or `stop`).
pub struct Gateway {
    pub http_port: u16,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    process: ServerProcess,
    client: reqwest::blocking::Client,
}

impl Gateway {
    /// Writes `config_toml` (a complete config) to DIR/qala.toml, spawns
    /// `qala run --config DIR/qala.toml --log-format text` (RUST_LOG=info unless set) with its
    /// output appended to DIR/qala.log, and waits (30 s) until `GET /ready` on `http_port`
    /// answers 200.
    pub fn start(config_toml: &str, http_port: u16, dir: PathBuf) -> Gateway {
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let config_path = dir.join("qala.toml");
        fs::write(&config_path, config_toml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let log_path = dir.join("qala.log");
        let mut command = Command::new(qala_bin());
        command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(["--log-format", "text"])
            .current_dir(&dir);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info");
        }
        let process = ServerProcess::spawn("qala", command, &log_path);
        let mut gateway = Gateway {
            http_port,
            dir,
            config_path,
            log_path,
            process,
            client: http_client(Duration::from_secs(10)),
        };
        gateway.wait_ready(START_TIMEOUT);
        gateway
    }

    fn wait_ready(&mut self, timeout: Duration) {
        let start = Instant::now();
        let url = format!("{}/ready", self.url());
        loop {
            if let Some(status) = self.process.exit_status() {
                panic!(
                    "qala exited with {status} before it was ready{}",
                    tail_block(&self.log_path, 60)
                );
            }
            let ready = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK);
            if ready {
                return;
            }
            if start.elapsed() >= timeout {
                panic!(
                    "qala: GET {url} did not answer 200 within {timeout:?}{}",
                    tail_block(&self.log_path, 60)
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:HTTP_PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// `GET path` (with its query, e.g. `/api/v1/sensors?stale=true`): the status and the body
    /// as JSON.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let url = format!("{}{path}", self.url());
        let response = self
            .client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status().as_u16();
        let body = response
            .text()
            .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {url}: {e}: not JSON: {body}"));
        (status, json)
    }

    /// The body of `GET /metrics` (Prometheus text format).
    pub fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.url());
        let response = self
            .client
            .get(&url)
            .send()
            .unwrap_or_else(|e| panic!("GET {url}: {e}{}", tail_block(&self.log_path, 40)));
        let status = response.status();
        let body = response
            .text()
            .unwrap_or_else(|e| panic!("reading GET {url}: {e}"));
        assert!(
            status.is_success(),
            "GET {url} answered {status}: {body}{}",
            tail_block(&self.log_path, 40)
        );
        body
    }

    /// SIGKILL and reap: a crash, nothing flushed.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM and wait up to 30 s for a graceful exit; returns its status. Panics (after
    /// SIGKILL) when it does not exit in time, or when it was not running.
    pub fn stop(&mut self) -> ExitStatus {
        let Some((status, killed)) = self.process.terminate(STOP_GRACE) else {
            panic!("Gateway::stop: qala is not running");
        };
        if killed {
            panic!(
                "qala did not exit within {STOP_GRACE:?} of SIGTERM; killed it{}",
                tail_block(&self.log_path, 60)
            );
        }
        status
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format
// ---------------------------------------------------------------------------------------------

/// One sample line of the Prometheus text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// All sample lines of a Prometheus text exposition (comments and blank lines skipped).
/// Panics on a line it cannot parse, naming it.
pub fn prom_samples(text: &str) -> Vec<PromSample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            parse_prom_line(line)
                .unwrap_or_else(|e| panic!("Prometheus text: cannot parse line {line:?}: {e}"))
        })
        .collect()
}

/// The value of the sample `name` whose label set is exactly `labels` (any order); `None` when
/// there is none. `labels == &[]` matches only the line without labels.
pub fn prom_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted: Vec<(&str, &str)> = labels.to_vec();
    wanted.sort_unstable();
    prom_samples(text)
        .into_iter()
        .find(|s| {
            let mut have: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            have.sort_unstable();
            s.name == name && have == wanted
        })
        .map(|s| s.value)
}

/// Sum of the samples of `name` whose labels include all of `labels` (subset match); 0 when none.
pub fn prom_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    prom_samples(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
        .map(|s| s.value)
        .sum()
}

fn parse_prom_line(line: &str) -> Result<PromSample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("empty metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let mut chars = after_brace.char_indices().peekable();
        loop {
            // skip separators
            while let Some(&(_, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    chars.next();
                } else {
                    break;
                }
            }
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated label set".into());
            };
            if c == '}' {
                rest = &after_brace[start + 1..];
                break;
            }
            let mut key_end = start;
            while let Some(&(i, c)) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    key_end = i;
                    break;
                }
                chars.next();
            }
            let key = after_brace[start..key_end].to_string();
            while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('=') {
                return Err(format!("label {key:?} has no '='"));
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err(format!("label {key:?} value is not quoted"));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("unterminated value of label {key:?}")),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c), // \\ and \"
                        None => return Err(format!("unterminated value of label {key:?}")),
                    },
                    Some((_, c)) => value.push(c),
                }
            }
            labels.push((key, value));
        }
    }
    let value_text = rest
        .split_whitespace()
        .next()
        .ok_or("no value after the labels")?;
    let value = match value_text {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        other => other
            .parse()
            .map_err(|e| format!("bad value {other:?}: {e}"))?,
    };
    Ok(PromSample {
        name: name.to_string(),
        labels,
        value,
    })
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

/// Opens a SQLite file the gateway writes, read-only (the gateway may still be running; WAL
/// readers do not block it).
pub fn sqlite_open_readonly(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("opening SQLite {} read-only: {e}", path.display()))
}

/// The single integer `sql` returns (e.g. `SELECT count(*) FROM readings`).
pub fn sqlite_i64(path: &Path, sql: &str) -> i64 {
    sqlite_open_readonly(path)
        .query_row(sql, [], |row| row.get(0))
        .unwrap_or_else(|e| panic!("SQLite {}: {sql:?}: {e}", path.display()))
}

/// A complete gateway config for tests: the broker at `mqtt_port` (Mosquitto, or the embedded
/// one when `embedded`), SQLite in `dir`, VictoriaMetrics as the InfluxDB v2 sink when given,
/// HTTP on `http_port`. `extra` is appended verbatim (more keys of the same sections must not
/// repeat a table header: pass whole `[section]` tables only for sections not written here).
pub struct QalaConfig<'a> {
    pub mqtt_port: u16,
    pub http_port: u16,
    pub dir: &'a Path,
    pub embedded: bool,
    pub influx_url: Option<String>,
    pub client_id: String,
    pub max_packet_size: usize,
    /// Lines added to the `[spool]` table (after its `dir`).
    pub spool_extra: String,
    pub extra: String,
}

impl<'a> QalaConfig<'a> {
    pub fn new(mqtt_port: u16, http_port: u16, dir: &'a Path) -> Self {
        QalaConfig {
            mqtt_port,
            http_port,
            dir,
            embedded: false,
            influx_url: None,
            client_id: format!("qala-test-{http_port}"),
            max_packet_size: 1 << 20,
            spool_extra: String::new(),
            extra: String::new(),
        }
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.dir.join("qala.sqlite")
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.dir.join("spool")
    }

    pub fn toml(&self) -> String {
        let mut t = format!(
            "[mqtt]\nurl = \"mqtt://127.0.0.1:{port}\"\nclient_id = \"{id}\"\nqos = 1\nmax_packet_size = {max}\n\n\
             [broker]\nembedded = {emb}\nlisten = \"127.0.0.1:{port}\"\n\n\
             [sqlite]\nenabled = true\npath = {db:?}\n\n\
             [spool]\ndir = {spool:?}\n{spool_extra}\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\n\n",
            port = self.mqtt_port,
            id = self.client_id,
            max = self.max_packet_size,
            emb = self.embedded,
            db = self.sqlite_path(),
            spool = self.spool_dir(),
            spool_extra = self.spool_extra,
            http = self.http_port,
        );
        if let Some(url) = &self.influx_url {
            t.push_str(&format!(
                "[influxdb]\nenabled = true\nurl = \"{url}\"\norg = \"qala\"\nbucket = \"qala\"\ntoken = \"test-token\"\nbatch_size = 5000\n\n"
            ));
        }
        t.push_str(&self.extra);
        t
    }
}

/// Reads one value of the readings view: `SELECT value ... WHERE sensor_id AND metric`.
pub fn sqlite_reading(path: &Path, sensor_id: &str, metric: &str) -> Option<(f64, String, i64)> {
    let conn = sqlite_open_readonly(path);
    conn.query_row(
        "SELECT value, unit, time_ns FROM readings_view WHERE sensor_id = ?1 AND metric = ?2",
        rusqlite::params![sensor_id, metric],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

/// One REAL of a query (e.g. a sum); 0 when the query yields NULL.
pub fn sqlite_f64(path: &Path, sql: &str) -> f64 {
    sqlite_open_readonly(path)
        .query_row(sql, [], |row| row.get::<_, Option<f64>>(0))
        .unwrap_or_else(|e| panic!("SQLite {}: {sql:?}: {e}", path.display()))
        .unwrap_or(0.0)
}
