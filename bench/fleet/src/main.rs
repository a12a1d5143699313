//! Fleet benchmark of the etcd plugin: many simulated servers resolving at once
//! against one etcd member, through a counting TCP proxy.
//!
//! ```text
//! cargo build --release -p provtarget-etcd -p provtarget-bench-fleet
//! target/release/provtarget-bench-fleet [--plugin target/release/libprovtarget_etcd.so] [--servers 1000] [--outage-secs 10] [--outage refuse|close]
//! ```
//!
//! Scenario "outage": the key is in etcd, the proxy in front of it is down for
//! `--outage-secs` (`refuse`, the default: its listening socket is closed, so the
//! kernel refuses connections and the plugin's logged failed tries count them; `close`:
//! it accepts, counts and closes each connection unanswered), then forwards again. Reported: connections (= requests: the plugin sends one request per
//! connection) the backend saw per second during the outage, and the time from recovery
//! until each resolution had its targets.
//!
//! Scenario "watch": the key is absent; every resolver reads it, finds nothing and
//! watches. Once all are watching, the key is written (straight to etcd). Reported:
//! requests while waiting, and the time from the write until each resolution had its
//! targets.
//!
//! Every simulated server is its own resolver object (`new_resolver` + `configure`),
//! each `targets` call on its own thread. Only 127.0.0.1 is used.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use provtarget_abi::{
    host::{HostServices, PluginLibrary, PluginResolver},
    LogLevel,
};
use provtarget_testsupport::{free_port, require_tool, wait_for_tcp, ServerProcess, TempDir};

const KEY: &str = "/bench/brokers";
const VALUE: &str = r#"["nats://prov1.example.net:4222", "prov2.example.net:4222"]"#;
/// Liveness limit for one scenario.
const LIMIT: Duration = Duration::from_secs(120);

/// The command line (see the crate docs).
struct Args {
    plugin: PathBuf,
    servers: usize,
    outage: Duration,
    outage_mode: Mode,
}

impl Args {
    fn parse() -> Args {
        let mut parsed = Args {
            plugin: PathBuf::from("target/release/libprovtarget_etcd.so"),
            servers: 1000,
            outage: Duration::from_secs(10),
            outage_mode: Mode::Refuse,
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
            match a.as_str() {
                "--plugin" => parsed.plugin = value().into(),
                "--servers" => parsed.servers = value().parse().expect("--servers N"),
                "--outage-secs" => {
                    parsed.outage = Duration::from_secs(value().parse().expect("--outage-secs S"))
                }
                "--outage" => {
                    parsed.outage_mode = match value().as_str() {
                        "refuse" => Mode::Refuse,
                        "close" => Mode::Close,
                        other => panic!("--outage refuse|close, not {other}"),
                    }
                }
                other => panic!("unknown argument {other}; see the crate docs"),
            }
        }
        parsed
    }
}

fn main() {
    let args = Args::parse();
    let etcd_bin = require_tool("etcd", "etcd-server").expect("etcd is needed");
    // SAFETY: the benchmark loads the plugin it was told to, built from this workspace.
    let lib = unsafe { PluginLibrary::open(&args.plugin) }
        .unwrap_or_else(|e| panic!("cannot load {}: {e}", args.plugin.display()));
    println!(
        "plugin {} ({}), {} simulated servers, outage {} s",
        lib.info().name,
        args.plugin.display(),
        args.servers,
        args.outage.as_secs()
    );

    let dir = TempDir::new("bench-fleet");
    let client = free_port();
    let _etcd = start_etcd(&etcd_bin, &dir, client);
    let proxy = Proxy::start(client);
    println!(
        "etcd {}, proxy 127.0.0.1:{}",
        etcd_version(&etcd_bin),
        proxy.port
    );
    outage_scenario(&args, &lib, &proxy, client);
    watch_scenario(&args, &lib, &proxy, client);
}

/// One etcd member on 127.0.0.1, its client API on `client`, ready.
fn start_etcd(etcd_bin: &std::path::Path, dir: &TempDir, client: u16) -> ServerProcess {
    let peer = free_port();
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(etcd_bin);
    cmd.args(["--name", "n1", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args([
            "--initial-cluster",
            &format!("n1={peer_url}"),
            "--initial-cluster-state",
            "new",
        ]);
    let etcd = ServerProcess::spawn("etcd", cmd, Some(&dir.path().join("etcd.log")));
    wait_for_tcp("etcd", client, LIMIT);
    wait_ready(client);
    etcd
}

/// The key is there; the proxy is down for the outage, then up: load during the
/// outage, time from recovery to targets.
fn outage_scenario(args: &Args, lib: &PluginLibrary, proxy: &Proxy, client: u16) {
    let (servers, outage, outage_mode) = (args.servers, args.outage, args.outage_mode);
    put(client, KEY, VALUE);
    let fleet = Fleet::new(lib, servers, proxy.port);
    proxy.set(outage_mode);
    std::thread::sleep(Duration::from_millis(50));
    let before = proxy.count();
    let (times, tries) = fleet.run(|| {
        std::thread::sleep(outage);
        let accepted = proxy.count() - before;
        let tried = fleet.tries.load(Ordering::SeqCst);
        let recovered = Instant::now();
        proxy.set(Mode::Up);
        // Refused connections never reach the proxy: each is one failed try.
        let during = if outage_mode == Mode::Refuse { tried } else { accepted };
        println!(
            "outage ({outage_mode:?}): {during} connection attempts in {} s = {:.0}/s ({:.2} per server per second); proxy accepted {accepted}, plugin logged {tried} failed tries",
            outage.as_secs(),
            during as f64 / outage.as_secs_f64(),
            during as f64 / outage.as_secs_f64() / servers as f64
        );
        recovered
    });
    report("outage: recovery -> targets", &times);
    println!(
        "outage: failed tries logged: {tries}; connections the proxy accepted in this scenario: {}",
        proxy.count() - before
    );
}

/// The key is absent; every resolver watches; it is written: requests while
/// waiting, time from the write to targets.
fn watch_scenario(args: &Args, lib: &PluginLibrary, proxy: &Proxy, client: u16) {
    let servers = args.servers;
    delete(client, KEY);
    let fleet = Fleet::new(lib, servers, proxy.port);
    let before = proxy.count();
    let (times, tries) = fleet.run(|| {
        let started = Instant::now();
        while fleet.watching.load(Ordering::SeqCst) < servers {
            assert!(
                started.elapsed() < LIMIT,
                "only {} of {servers} watching",
                fleet.watching.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "watch: all {servers} watching after {:.2} s, {} requests",
            started.elapsed().as_secs_f64(),
            proxy.count() - before
        );
        let quiet = proxy.count();
        std::thread::sleep(Duration::from_secs(2));
        println!(
            "watch: requests during 2 s of waiting: {}",
            proxy.count() - quiet
        );
        // Measured from just before the write: watchers can hear of it before the
        // put's own answer arrives.
        let written = Instant::now();
        put(client, KEY, VALUE);
        written
    });
    report("watch: write -> targets", &times);
    println!(
        "watch: failed tries logged: {tries}; requests in all: {}",
        proxy.count() - before
    );
}

// ---------------------------------------------------------------------------------

/// Per-call host services: cancellation, sleep, and counting log lines.
struct Host {
    cancel: Arc<AtomicBool>,
    tries: Arc<AtomicUsize>,
    watching: Arc<AtomicUsize>,
}

impl HostServices for Host {
    fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
    fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            if self.is_cancelled() {
                return true;
            }
            std::thread::sleep((end - Instant::now()).min(Duration::from_millis(20)));
        }
        self.is_cancelled()
    }
    fn log(&self, level: LogLevel, message: &str) {
        if message.contains("watching") {
            self.watching.fetch_add(1, Ordering::SeqCst);
        } else if level <= LogLevel::Warn && message.starts_with("try ") {
            let n = self.tries.fetch_add(1, Ordering::Relaxed);
            // Shown for diagnosis: the outage's refused connections are expected.
            if n < 5 && !message.contains("cannot connect") {
                eprintln!("failed try: {message}");
            }
        }
    }
}

struct Fleet {
    resolvers: Vec<PluginResolver>,
    cancel: Arc<AtomicBool>,
    tries: Arc<AtomicUsize>,
    watching: Arc<AtomicUsize>,
}

impl Fleet {
    fn new(lib: &PluginLibrary, n: usize, port: u16) -> Fleet {
        let fleet = Fleet {
            resolvers: Vec::with_capacity(n),
            cancel: Arc::default(),
            tries: Arc::default(),
            watching: Arc::default(),
        };
        let config = vec![
            (
                "plugin.provtarget.etcd.endpoints".to_string(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("plugin.provtarget.etcd.key".to_string(), KEY.to_string()),
        ];
        let mut resolvers = Vec::with_capacity(n);
        for _ in 0..n {
            let mut r = lib.new_resolver().expect("new_resolver");
            r.configure(&fleet.host(), &config).expect("configure");
            resolvers.push(r);
        }
        Fleet { resolvers, ..fleet }
    }

    fn host(&self) -> Host {
        Host {
            cancel: Arc::clone(&self.cancel),
            tries: Arc::clone(&self.tries),
            watching: Arc::clone(&self.watching),
        }
    }

    /// Starts every resolution on its own thread, runs `event` (which returns the
    /// moment to measure from), and returns each resolution's time from that moment.
    fn run(&self, event: impl FnOnce() -> Instant) -> (Vec<Duration>, usize) {
        let done: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
        let from = std::thread::scope(|s| {
            for r in &self.resolvers {
                let host = self.host();
                let done = &done;
                std::thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(s, move || {
                        let t = r.targets(&host).expect("targets");
                        assert_eq!(t.len(), 2, "{t:?}");
                        done.lock().unwrap().push(Instant::now());
                    })
                    .expect("thread");
            }
            let from = event();
            // Liveness guard: cancel everything still running after LIMIT.
            let guard = Instant::now();
            while done.lock().unwrap().len() < self.resolvers.len() && guard.elapsed() < LIMIT {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.cancel.store(true, Ordering::SeqCst);
            from
        });
        let times = done
            .into_inner()
            .unwrap()
            .into_iter()
            .map(|t| t.saturating_duration_since(from))
            .collect();
        (times, self.tries.load(Ordering::Relaxed))
    }
}

fn report(what: &str, times: &[Duration]) {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{what}: n={} median {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        ms.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}

// ---------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Mode {
    /// Forwards every connection to etcd.
    Up = 0,
    /// Listening socket closed: the kernel refuses every connection (nothing to count
    /// here; the plugin's failed tries count them).
    Refuse = 1,
    /// Accepts, counts and closes every connection unanswered.
    Close = 2,
}

/// A TCP proxy to etcd on 127.0.0.1 that counts the connections it accepts.
struct Proxy {
    port: u16,
    mode: Arc<AtomicU8>,
    count: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(target: u16) -> Proxy {
        let first = TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        let port = first.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(Mode::Up as u8));
        let count = Arc::new(AtomicUsize::new(0));
        let (m, c) = (Arc::clone(&mode), Arc::clone(&count));
        std::thread::spawn(move || {
            let mut listener = Some(first);
            loop {
                let mode = m.load(Ordering::SeqCst);
                if mode == Mode::Refuse as u8 {
                    listener = None;
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                let l = match &listener {
                    Some(l) => l,
                    None => match TcpListener::bind(("127.0.0.1", port)) {
                        Ok(l) => listener.insert(l),
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        }
                    },
                };
                l.set_nonblocking(true).expect("nonblocking listener");
                match l.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::SeqCst);
                        let _ = conn.set_nonblocking(false);
                        if mode == Mode::Close as u8 {
                            let _ = conn.shutdown(Shutdown::Both);
                            continue;
                        }
                        let _ = std::thread::Builder::new()
                            .stack_size(64 * 1024)
                            .spawn(move || pipe(conn, target));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        Proxy { port, mode, count }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

fn pipe(client: TcpStream, target: u16) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut client = client;
            let mut server = server;
            let _ = std::io::copy(&mut client, &mut server);
            let _ = server.shutdown(Shutdown::Write);
        });
    let _ = std::io::copy(&mut s2, &mut c2);
    let _ = c2.shutdown(Shutdown::Both);
    if let Ok(up) = up {
        let _ = up.join();
    }
}

// ---------------------------------------------------------------------------------

fn http(port: u16, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect etcd");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn wait_ready(port: u16) {
    let started = Instant::now();
    let body = format!(r#"{{"key":"{}"}}"#, B64.encode("probe"));
    while http(port, "/v3/kv/range", &body).0 != 200 {
        assert!(started.elapsed() < LIMIT, "etcd not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn put(port: u16, key: &str, value: &str) {
    let body = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        B64.encode(key),
        B64.encode(value)
    );
    let (status, out) = http(port, "/v3/kv/put", &body);
    assert_eq!(status, 200, "{out}");
}

fn delete(port: u16, key: &str) {
    let body = format!(r#"{{"key":"{}"}}"#, B64.encode(key));
    let (status, out) = http(port, "/v3/kv/deleterange", &body);
    assert_eq!(status, 200, "{out}");
}

fn etcd_version(etcd: &std::path::Path) -> String {
    Command::new(etcd)
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}
