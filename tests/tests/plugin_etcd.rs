//! The etcd plugin against real etcd servers (one member, or a three-member cluster)
//! started by the tests on 127.0.0.1, through the real loader and `provtarget` binary.
mod common;
use common::*;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use base64::{engine::general_purpose::STANDARD as B64, Engine};
use provtarget_testsupport::{free_port, require_tool, ServerProcess};
use serde_json::{json, Value};

const PKG: &str = "provtarget-etcd";
const NAME: &str = "etcd Provisioning Target";
/// Liveness limit for a cluster to come up on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------
// etcd servers

struct Member {
    name: String,
    client: u16,
    peer: u16,
    proc: Option<ServerProcess>,
}

/// One etcd cluster: members with their ports and data directories.
struct Cluster {
    etcd: PathBuf,
    dir: TempDir,
    members: Vec<Member>,
    /// Extra etcd flags for every member.
    extra: Vec<String>,
    /// `http` or `https` (client URLs).
    scheme: &'static str,
}

impl Cluster {
    /// A cluster of `n` members with chosen ports, none started yet; `None` (test
    /// skipped, or a panic under CI) when etcd is not installed.
    fn new(label: &str, n: usize) -> Option<Cluster> {
        let etcd = require_tool("etcd", "etcd-server")?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("n{i}"),
                client: free_port(),
                peer: free_port(),
                proc: None,
            })
            .collect();
        Some(Cluster {
            etcd,
            dir: TempDir::new(label),
            members,
            extra: Vec::new(),
            scheme: "http",
        })
    }

    /// A one-member cluster, started and healthy.
    fn single(label: &str) -> Option<Cluster> {
        let mut c = Cluster::new(label, 1)?;
        c.start_all();
        Some(c)
    }

    fn url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.members[i].client)
    }

    fn endpoints(&self) -> String {
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let client = format!("{}://127.0.0.1:{}", self.scheme, m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let mut cmd = Command::new(&self.etcd);
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", self.dir.path().to_str().unwrap()])
            // Generous raft timings: the test machine is small and busy.
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(&self.extra)
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH);
        let log = self.dir.path().join(format!("{}.log", m.name));
        self.members[i].proc = Some(ServerProcess::spawn(
            &format!("etcd {}", m.name),
            cmd,
            Some(&log),
        ));
    }

    /// Starts every member and waits until each serves a range.
    fn start_all(&mut self) {
        for i in 0..self.members.len() {
            self.start(i);
        }
        for i in 0..self.members.len() {
            self.wait_ready(i);
        }
    }

    /// Waits until member `i` answers a range request (so it has a leader).
    fn wait_ready(&mut self, i: usize) {
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = post(
                self.members[i].client,
                "/v3/kv/range",
                &json!({"key": B64.encode("probe")}),
                None,
            ) {
                return;
            }
            if let Some(p) = self.members[i].proc.as_mut() {
                if p.has_exited() {
                    panic!("etcd {} exited:\n{}", i, self.log(i));
                }
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "etcd member {i} not ready after {START_LIMIT:?}:\n{}",
                self.log(i)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("{}.log", self.members[i].name)),
        )
        .unwrap_or_default()
    }

    /// The index of the member that is the Raft leader (each member's
    /// `/v3/maintenance/status` names the leader's id; the member whose own id it is).
    fn leader(&self) -> usize {
        let started = Instant::now();
        loop {
            for i in 0..self.members.len() {
                if let Ok((200, status)) = post(
                    self.members[i].client,
                    "/v3/maintenance/status",
                    &json!({}),
                    None,
                ) {
                    let own = status["header"]["member_id"].as_str().unwrap_or("");
                    let leader = status["leader"].as_str().unwrap_or("-");
                    if own == leader {
                        return i;
                    }
                }
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "no member says it is the leader"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.members[i].proc.take() {
            p.kill();
        }
    }

    /// Puts `key = value` through member `i`, retrying while the cluster settles.
    fn put(&self, i: usize, key: &str, value: &str) {
        self.put_as(i, key, value, None)
    }

    fn put_as(&self, i: usize, key: &str, value: &str, token: Option<&str>) {
        let body = json!({"key": B64.encode(key), "value": B64.encode(value)});
        let started = Instant::now();
        loop {
            match post(self.members[i].client, "/v3/kv/put", &body, token) {
                Ok((200, _)) => return,
                other => assert!(
                    started.elapsed() < START_LIMIT,
                    "put {key} via member {i} failed: {other:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A call that must succeed.
    fn must(&self, i: usize, path: &str, body: Value, token: Option<&str>) -> Value {
        match post(self.members[i].client, path, &body, token) {
            Ok((200, v)) => v,
            other => panic!("{path} {body} failed: {other:?}"),
        }
    }
}

/// `POST path` with a JSON body to etcd on 127.0.0.1:port; the status and JSON answer.
fn post(port: u16, path: &str, body: &Value, token: Option<&str>) -> Result<(u16, Value), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, mut rest) = text
        .split_once("\r\n\r\n")
        .ok_or(format!("bad answer {text:?}"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("bad status {head:?}"))?;
    let mut body = String::new();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        loop {
            let (size, after) = rest.split_once("\r\n").ok_or("bad chunk")?;
            let size = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if size == 0 {
                break;
            }
            body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
    } else {
        body = rest.to_string();
    }
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, v))
}

// ---------------------------------------------------------------------------------
// the provtarget binary

fn etcd_dir(label: &str) -> TempDir {
    plugin_dir(label, &[PKG])
}

fn run_targets(dir: &TempDir, sets: &[String], timeout: &str) -> Run {
    targets_in(
        dir,
        sets,
        &["--timeout", timeout, "--json", "--log-level", "info"],
    )
}

fn servers(run: &Run) -> Vec<String> {
    let v = run.ok().json();
    assert_eq!(v["resolver"], NAME, "{run:#?}");
    v["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// `provtarget targets` running in the background, its stderr read line by line.
struct Background {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
    stdout: std::thread::JoinHandle<String>,
}

impl Background {
    fn start(dir: &TempDir, sets: &[String], timeout: &str) -> Background {
        let d = path_str(dir.path());
        let mut cmd = Command::new(provtarget_testsupport::provtarget_bin());
        cmd.args([
            "targets",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &d,
            "--timeout",
            timeout,
            "--json",
            "--log-level",
            "info",
        ]);
        for s in sets {
            cmd.args(["--set", s]);
        }
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot start provtarget");
        let mut out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        Background {
            child,
            lines,
            stderr: Vec::new(),
            stdout,
        }
    }

    /// Waits (liveness limit 60 s) for a stderr line containing every one of `parts`.
    fn wait_for(&mut self, parts: &[&str]) -> String {
        let limit = Instant::now() + Duration::from_secs(60);
        while Instant::now() < limit {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.stderr.push(line.clone());
                if parts.iter().all(|p| line.contains(p)) {
                    return line;
                }
            }
        }
        let _ = self.child.kill();
        panic!(
            "no log line with {parts:?}; stderr so far:\n{}",
            self.stderr.join("\n")
        );
    }

    fn finish(mut self) -> Run {
        let limit = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "provtarget still running after 60 s:\n{}",
                    self.stderr.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.stderr.push(line);
        }
        Run {
            code: status.code(),
            stdout: self.stdout.join().unwrap(),
            stderr: self.stderr.join("\n"),
        }
    }
}

fn set(key: &str, value: impl std::fmt::Display) -> String {
    format!("plugin.provtarget.etcd.{key}={value}")
}

// ---------------------------------------------------------------------------------
// tests

#[test]
fn key_holding_a_json_list() {
    let Some(etcd) = Cluster::single("etcd-json") else {
        return;
    };
    etcd.put(
        0,
        "/choria/brokers",
        r#"["nats://prov1.example.net:4222", "prov2.example.net:4223"]"#,
    );
    let dir = etcd_dir("etcd-json-p");
    let run = run_targets(
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "/choria/brokers")],
        "20s",
    );
    assert_eq!(
        servers(&run),
        [
            "nats://prov1.example.net:4222",
            "nats://prov2.example.net:4223"
        ]
    );
}

#[test]
fn key_holding_a_comma_list_and_garbage_is_refused() {
    let Some(etcd) = Cluster::single("etcd-comma") else {
        return;
    };
    etcd.put(0, "brokers", " tls://10.1.0.1:4222 , 10.1.0.2:4222,");
    etcd.put(0, "garbage", "10.1.0.1:4222, not a broker");
    let dir = etcd_dir("etcd-comma-p");
    let run = run_targets(
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "brokers")],
        "20s",
    );
    assert_eq!(
        servers(&run),
        ["tls://10.1.0.1:4222", "nats://10.1.0.2:4222"]
    );

    let run = run_targets(
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "garbage")],
        "2s",
    );
    run.failed(1);
    run.stderr_has(r#"etcd key "garbage""#)
        .stderr_has("\"not a broker\"")
        .stderr_has("not a broker address");
}

#[test]
fn prefix_mode_takes_one_broker_per_key_in_key_order() {
    let Some(etcd) = Cluster::single("etcd-prefix") else {
        return;
    };
    etcd.put(0, "prov/b", "b.example:4222");
    etcd.put(0, "prov/a", "nats://a.example:4222");
    etcd.put(0, "prov/c", "  ");
    etcd.put(0, "prov0", "outside.example:4222");
    etcd.put(0, "pro", "outside2.example:4222");
    let dir = etcd_dir("etcd-prefix-p");
    let run = run_targets(
        &dir,
        &[set("endpoints", etcd.url(0)), set("prefix", "prov/")],
        "20s",
    );
    assert_eq!(
        servers(&run),
        ["nats://a.example:4222", "nats://b.example:4222"]
    );
}

#[test]
fn a_prefix_is_a_directory_and_a_bad_value_is_skipped_with_a_warning() {
    let Some(etcd) = Cluster::single("etcd-prefix-dir") else {
        return;
    };
    etcd.put(0, "fleet/a", "a.example:4222");
    etcd.put(0, "fleet/b", "not a broker");
    etcd.put(0, "fleet/c", "c.example:4222");
    // Siblings of the directory "fleet/": never part of the list.
    etcd.put(0, "fleet2/x", "sibling.example:4222");
    etcd.put(0, "fleetx", "sibling2.example:4222");
    let dir = etcd_dir("etcd-prefix-dir-p");
    // Written without the '/': it is added. In-process, so the plugin's warning is
    // on stderr before the answer (a resolver child's log lines are relayed by a thread
    // that can lose the race with a quick exit on a loaded machine: a host matter).
    let run = run_targets(
        &dir,
        &[
            set("endpoints", etcd.url(0)),
            set("prefix", "fleet"),
            "plugin.provtarget.isolation=none".to_string(),
        ],
        "20s",
    );
    assert_eq!(
        servers(&run),
        ["nats://a.example:4222", "nats://c.example:4222"]
    );
    run.stderr_has("WARN")
        .stderr_has("etcd key \"fleet/b\" (prefix \"fleet/\")")
        .stderr_has("skipping that key");
}

#[test]
fn a_prefix_list_written_key_by_key_is_read_whole_after_the_settle_window() {
    let Some(etcd) = Cluster::single("etcd-settle") else {
        return;
    };
    let dir = etcd_dir("etcd-settle-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", etcd.url(0)), set("prefix", "fleet/")],
        "30s",
    );
    bg.wait_for(&["watching prefix \"fleet/\""]);
    // A writer adding a list key by key, 200 ms apart (well inside the 1 s window).
    etcd.put(0, "fleet/1", "one.example:4222");
    std::thread::sleep(Duration::from_millis(200));
    etcd.put(0, "fleet/2", "two.example:4222");
    std::thread::sleep(Duration::from_millis(200));
    etcd.put(0, "fleet/3", "three.example:4222");
    let run = bg.finish();
    assert_eq!(
        servers(&run),
        [
            "nats://one.example:4222",
            "nats://two.example:4222",
            "nats://three.example:4222"
        ]
    );
}

#[test]
fn key_written_later_arrives_through_the_watch() {
    let Some(etcd) = Cluster::single("etcd-watch") else {
        return;
    };
    let dir = etcd_dir("etcd-watch-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "late")],
        "30s",
    );
    bg.wait_for(&["watching key \"late\"", &etcd.url(0)]);
    std::thread::sleep(Duration::from_millis(1500));
    etcd.put(0, "late", "late.example:4222");
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://late.example:4222"]);
    // One try: the watch, not a poll, brought the key.
    run.stderr_lacks("try 1 failed");
}

#[test]
fn a_prefix_written_later_arrives_through_the_watch() {
    let Some(etcd) = Cluster::single("etcd-pwatch") else {
        return;
    };
    etcd.put(0, "elsewhere/x", "not-this.example:4222");
    let dir = etcd_dir("etcd-pwatch-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", etcd.url(0)), set("prefix", "fleet/")],
        "30s",
    );
    bg.wait_for(&["watching prefix \"fleet/\""]);
    etcd.put(0, "fleet/2", "two.example:4222");
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://two.example:4222"]);
    run.stderr_lacks("try 1 failed");
}

#[test]
fn an_absent_key_until_the_deadline_reports_it_and_honours_cancellation() {
    let Some(etcd) = Cluster::single("etcd-absent") else {
        return;
    };
    let dir = etcd_dir("etcd-absent-p");
    // In the default process isolation (the resolver in a child) and in this process:
    // the cancelled plugin ends promptly and its last error reaches the final line.
    for isolation in ["process", "none"] {
        let run = run_targets(
            &dir,
            &[
                set("endpoints", etcd.url(0)),
                set("key", "never"),
                format!("plugin.provtarget.isolation={isolation}"),
            ],
            "2s",
        );
        run.failed(1);
        run.stderr_has("watching key \"never\"");
        // Cancelled while watching, the try fails with why, and the deadline error
        // carries it as the resolver's last error.
        run.stderr_has(r#"try 1 failed: etcd key "never""#)
            .stderr_has("is not set")
            .stderr_has("context deadline exceeded after 1 try; last error: etcd key \"never\"");
        run.deadline_honoured();
    }
}

#[test]
fn backend_down_at_start_then_up() {
    let Some(mut etcd) = Cluster::new("etcd-late", 1) else {
        return;
    };
    let dir = etcd_dir("etcd-late-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "brokers")],
        "60s",
    );
    // The plugin retries with backoff, logging each failed try with its cause.
    bg.wait_for(&["try 1 failed", &etcd.url(0), "cannot connect"]);
    bg.wait_for(&["try 2 failed"]);
    etcd.start_all();
    etcd.put(0, "brokers", "up.example:4222");
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://up.example:4222"]);
}

#[test]
fn backend_never_up_ends_at_the_timeout_with_the_last_error() {
    let port = free_port();
    let dir = etcd_dir("etcd-never-p");
    let url = format!("http://127.0.0.1:{port}");
    let run = run_targets(&dir, &[set("endpoints", &url), set("key", "brokers")], "3s");
    run.failed(1);
    run.stderr_has("try 1 failed");
    // Every failed try is logged with its cause; the last one is the last error.
    let last = run
        .stderr
        .lines()
        .rev()
        .find(|l| l.contains("failed: etcd at"))
        .unwrap_or_default();
    assert!(
        last.contains(&format!("etcd at {url} (kv/range): cannot connect")),
        "{}",
        run.stderr
    );
    run.deadline_honoured();
}

#[test]
fn a_backend_that_never_answers_is_cancelled_promptly() {
    // Accepts connections and says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until && held.len() < 50 {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        held.len()
    });
    let dir = etcd_dir("etcd-silent-p");
    let run = run_targets(
        &dir,
        &[
            set("endpoints", format!("http://127.0.0.1:{port}")),
            set("key", "k"),
            set("timeout", "30s"),
        ],
        "1s",
    );
    run.failed(1);
    // Cancelled mid-request (the request timeout is 30 s), within the host's grace.
    run.deadline_honoured();
    drop(holder);
}

#[test]
fn fails_over_when_the_watched_member_dies() {
    let Some(mut etcd) = Cluster::new("etcd-failover", 3) else {
        return;
    };
    etcd.start_all();
    let dir = etcd_dir("etcd-failover-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", etcd.endpoints()), set("key", "brokers")],
        "60s",
    );
    // Members are tried in order: the first one serves the range and the watch.
    bg.wait_for(&["watching key \"brokers\"", &format!("on {}", etcd.url(0))]);
    etcd.kill(0);
    etcd.put(1, "brokers", r#"["after-failover.example:4222"]"#);
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://after-failover.example:4222"]);
    run.stderr_has(&etcd.url(0)).stderr_has("next member");
}

#[test]
fn a_watched_member_that_hangs_is_left_within_seconds() {
    let Some(mut etcd) = Cluster::new("etcd-hungwatch", 3) else {
        return;
    };
    etcd.start_all();
    // Watch on a follower, so the cluster keeps its leader when that member hangs.
    let leader = etcd.leader();
    let watched = (0..3).find(|&i| i != leader).unwrap();
    let mut endpoints: Vec<String> = vec![etcd.url(watched)];
    endpoints.extend((0..3).filter(|&i| i != watched).map(|i| etcd.url(i)));
    let dir = etcd_dir("etcd-hungwatch-p");
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", endpoints.join(",")), set("key", "brokers")],
        "60s",
    );
    bg.wait_for(&[
        "watching key \"brokers\"",
        &format!("on {}", etcd.url(watched)),
    ]);
    // Hang it: the process stops answering but its sockets stay open (SIGSTOP, by pid).
    let pid = etcd.members[watched].proc.as_ref().unwrap().pid();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let other = (0..3).find(|&i| i != watched && i != leader).unwrap();
    etcd.put(other, "brokers", r#"["after-hang.example:4222"]"#);
    let written = Instant::now();
    let run = bg.finish();
    // Liveness only: well before the 30 s re-watch that noticed it before.
    let took = written.elapsed();
    eprintln!("the answer came {took:?} after the write (the watched member hung)");
    assert_eq!(servers(&run), ["nats://after-hang.example:4222"]);
    assert!(took < Duration::from_secs(20), "{took:?}\n{}", run.stderr);
    run.stderr_has(&format!(
        "etcd at {} stopped answering while watched",
        etcd.url(watched)
    ));
    etcd.kill(watched);
}

#[test]
fn the_leader_dies_during_resolution() {
    let Some(mut etcd) = Cluster::new("etcd-leader", 3) else {
        return;
    };
    etcd.start_all();
    let leader = etcd.leader();
    let dir = etcd_dir("etcd-leader-p");
    // The plugin's first member is the leader itself: its range and watch are there.
    let mut endpoints: Vec<String> = vec![etcd.url(leader)];
    endpoints.extend((0..3).filter(|&i| i != leader).map(|i| etcd.url(i)));
    let mut bg = Background::start(
        &dir,
        &[set("endpoints", endpoints.join(",")), set("key", "brokers")],
        "60s",
    );
    bg.wait_for(&[
        "watching key \"brokers\"",
        &format!("on {}", etcd.url(leader)),
    ]);
    etcd.kill(leader);
    // The two survivors elect a new leader; the key is written through one of them.
    let survivor = (0..3).find(|&i| i != leader).unwrap();
    etcd.put(survivor, "brokers", r#"["after-leader.example:4222"]"#);
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://after-leader.example:4222"]);
    run.stderr_has(&etcd.url(leader));
}

#[test]
fn a_dead_first_member_passes_the_request_to_the_next() {
    let Some(mut etcd) = Cluster::new("etcd-dead1", 3) else {
        return;
    };
    etcd.start_all();
    etcd.put(1, "brokers", "x.example:4222");
    etcd.kill(0);
    let dir = etcd_dir("etcd-dead1-p");
    let run = run_targets(
        &dir,
        &[set("endpoints", etcd.endpoints()), set("key", "brokers")],
        "20s",
    );
    assert_eq!(servers(&run), ["nats://x.example:4222"]);
    // No failed try: the fail-over happened inside the first one.
    run.stderr_lacks("try 1 failed");
}

#[test]
fn a_hung_first_member_costs_the_failover_delay_and_is_named_once() {
    let Some(etcd) = Cluster::single("etcd-hung1") else {
        return;
    };
    etcd.put(0, "brokers", "x.example:4222");
    // A member that accepts connections (the kernel's backlog) and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("http://{}", hung.local_addr().unwrap());
    let dir = etcd_dir("etcd-hung1-p");
    let started = Instant::now();
    let run = run_targets(
        &dir,
        &[
            set("endpoints", format!("{hung_url}, {}", etcd.url(0))),
            set("key", "brokers"),
            // Only failover can answer before this timeout.
            set("timeout", "40s"),
        ],
        "50s",
    );
    assert_eq!(servers(&run), ["nats://x.example:4222"]);
    // Liveness only (figures in BENCHMARKS.md): far below one 40 s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let named: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "etcd member {hung_url} gave no answer within 250 ms"
            ))
        })
        .collect();
    assert_eq!(named.len(), 1, "logged once, at warn:\n{}", run.stderr);
    assert!(named[0].contains("WARN"), "{}", named[0]);
    assert!(
        named[0].contains(&format!("{} answered instead", etcd.url(0))),
        "{}",
        named[0]
    );
    drop(hung);
}

#[test]
fn etcd_auth_with_username_and_password() {
    let Some(etcd) = Cluster::single("etcd-auth") else {
        return;
    };
    etcd.put(0, "secure/brokers", "secure.example:4222");
    enable_auth(&etcd);

    let dir = etcd_dir("etcd-auth-p");
    let base = [set("endpoints", etcd.url(0)), set("key", "secure/brokers")];
    let with = |user: &str, pw: &str| -> Vec<String> {
        let mut v = base.to_vec();
        v.push(set("username", user));
        v.push(set("password", pw));
        v
    };
    let run = run_targets(&dir, &with("reader", "readerpw"), "20s");
    assert_eq!(servers(&run), ["nats://secure.example:4222"]);

    let run = run_targets(&dir, &with("reader", "wrong"), "2s");
    run.failed(1);
    run.stderr_has("try 1 failed");
    run.stderr_has("refused user \"reader\"")
        .stderr_has("plugin.provtarget.etcd.password");
    assert!(
        !run.stderr.contains("wrong"),
        "the password leaked: {}",
        run.stderr
    );

    let run = run_targets(&dir, &base, "2s");
    run.failed(1);
    run.stderr_has("requires authentication: set plugin.provtarget.etcd.username");

    // A key the reader may not read.
    let mut other = with("reader", "readerpw");
    other[1] = set("key", "elsewhere");
    let run = run_targets(&dir, &other, "2s");
    run.failed(1);
    run.stderr_has("permission denied");
}

/// Creates root and a `reader` user that may read `secure/*`, then turns auth on.
fn enable_auth(etcd: &Cluster) {
    etcd.must(
        0,
        "/v3/auth/user/add",
        json!({"name": "root", "password": "rootpw"}),
        None,
    );
    etcd.must(
        0,
        "/v3/auth/user/grant",
        json!({"user": "root", "role": "root"}),
        None,
    );
    etcd.must(0, "/v3/auth/role/add", json!({"name": "prov-reader"}), None);
    etcd.must(
        0,
        "/v3/auth/role/grant",
        json!({"name": "prov-reader", "perm": {"permType": "READ", "key": B64.encode("secure/"), "range_end": B64.encode("secure0")}}),
        None,
    );
    etcd.must(
        0,
        "/v3/auth/user/add",
        json!({"name": "reader", "password": "readerpw"}),
        None,
    );
    etcd.must(
        0,
        "/v3/auth/user/grant",
        json!({"user": "reader", "role": "prov-reader"}),
        None,
    );
    etcd.must(0, "/v3/auth/enable", json!({}), None);
}

#[test]
fn an_expired_auth_token_is_renewed() {
    let Some(mut etcd) = Cluster::new("etcd-ttl", 1) else {
        return;
    };
    // Simple tokens expire after 1 s unused: the plugin's token dies while it watches.
    etcd.extra = vec!["--auth-token-ttl".into(), "1".into()];
    etcd.start_all();
    enable_auth(&etcd);
    let dir = etcd_dir("etcd-ttl-p");
    let sets = [
        set("endpoints", etcd.url(0)),
        set("key", "secure/late"),
        set("username", "reader"),
        set("password", "readerpw"),
    ];
    let mut bg = Background::start(&dir, &sets, "60s");
    bg.wait_for(&["watching key \"secure/late\""]);
    std::thread::sleep(Duration::from_secs(3));
    let token = etcd.must(
        0,
        "/v3/auth/authenticate",
        json!({"name": "root", "password": "rootpw"}),
        None,
    )["token"]
        .as_str()
        .unwrap()
        .to_string();
    // A blank value: no brokers yet, so the plugin reads again (with its expired
    // token, which etcd refuses) and goes back to watching.
    etcd.put_as(0, "secure/late", " ", Some(&token));
    bg.wait_for(&["no longer accepts our token; authenticating again"]);
    bg.wait_for(&["watching key \"secure/late\""]);
    etcd.put_as(0, "secure/late", "renewed.example:4222", Some(&token));
    let run = bg.finish();
    assert_eq!(servers(&run), ["nats://renewed.example:4222"]);
}

#[test]
fn buildinfo_lists_the_plugin_and_masks_the_password() {
    let dir = etcd_dir("etcd-bi-p");
    let run = run_in(
        "buildinfo",
        &dir,
        &[
            "plugin.provtarget.etcd.endpoints=http://127.0.0.1:1,http://127.0.0.1:2",
            "plugin.provtarget.etcd.key=brokers",
            "plugin.provtarget.etcd.username=reader",
            "plugin.provtarget.etcd.password=hunter2-secret",
        ],
        &[],
    );
    run.ok();
    assert!(run.stdout.contains(NAME), "{}", run.stdout);
    run.stdout_has("http://127.0.0.1:1,http://127.0.0.1:2");
    run.stdout_has("*****");
    assert!(
        !run.stdout.contains("hunter2") && !run.stderr.contains("hunter2"),
        "{run:#?}"
    );
    // What it found: no member answered, and why.
    run.stdout_has("plugin.provtarget.etcd.detected.member: none: no etcd member answered: ");
}

#[test]
fn buildinfo_shows_the_member_that_answered_and_what_it_holds() {
    let Some(etcd) = Cluster::single("etcd-bi-found") else {
        return;
    };
    etcd.put(0, "brokers", r#"["a.example:4222", "b.example:4222"]"#);
    let dir = etcd_dir("etcd-bi-found-p");
    let run = run_in(
        "buildinfo",
        &dir,
        &[set("endpoints", etcd.url(0)), set("key", "brokers")],
        &[],
    );
    run.ok();
    run.stdout_has(&format!(
        "plugin.provtarget.etcd.detected.member: {} (answered in ",
        etcd.url(0)
    ))
    .stdout_has("key \"brokers\" holds 2 broker(s))\n");
}

#[test]
fn configuration_errors_name_the_keys() {
    let dir = etcd_dir("etcd-cfg-p");
    let d = path_str(dir.path());
    let check = |sets: &[&str], expected: &[&str]| {
        let mut args = vec!["buildinfo", "--plugin-dir", d.as_str()];
        for s in sets {
            args.push("--set");
            args.push(s);
        }
        let run = provtarget(&args);
        let all = format!("{}\n{}", run.stdout, run.stderr);
        for e in expected {
            assert!(all.contains(e), "{e:?} not in:\n{all}");
        }
    };
    check(
        &["plugin.provtarget.etcd.key=a", "plugin.provtarget.etcd.prefix=b"],
        &["set exactly one of plugin.provtarget.etcd.key and plugin.provtarget.etcd.prefix (both are set)"],
    );
    check(&[], &["set exactly one of plugin.provtarget.etcd.key and plugin.provtarget.etcd.prefix (neither is set)"]);
    check(
        &[
            "plugin.provtarget.etcd.key=a",
            "plugin.provtarget.etcd.endpoints=127.0.0.1:2379",
        ],
        &["plugin.provtarget.etcd.endpoints = \"127.0.0.1:2379\" is not valid"],
    );
    check(
        &[
            "plugin.provtarget.etcd.key=a",
            "plugin.provtarget.etcd.username=u",
        ],
        &["plugin.provtarget.etcd.password"],
    );
    check(
        &[
            "plugin.provtarget.etcd.key=a",
            "plugin.provtarget.etcd.tls_cert=/nonexistent.pem",
        ],
        &["plugin.provtarget.etcd.tls_cert"],
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl
/// in `dir`: `(ca.pem, server.pem, server.key, client.pem, client.key)`.
fn make_certs(dir: &std::path::Path) -> Option<[PathBuf; 5]> {
    let openssl = require_tool("openssl", "openssl")?;
    let run = |args: &[&str]| {
        let out = Command::new(&openssl)
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=provtarget test CA",
        ],
    ]
    .concat());
    // etcd's JSON gateway dials its own gRPC port with the server certificate as its
    // client certificate: the server one needs clientAuth too.
    for (name, usage) in [
        ("server", "serverAuth,clientAuth"),
        ("client", "clientAuth"),
    ] {
        std::fs::write(
            dir.join(format!("{name}.ext")),
            format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage={usage}\n"),
        )
        .unwrap();
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={name}"),
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }
    Some(
        [
            "ca.pem",
            "server.pem",
            "server.key",
            "client.pem",
            "client.key",
        ]
        .map(|f| dir.join(f)),
    )
}

#[test]
fn https_endpoint_with_a_client_certificate() {
    let Some(mut etcd) = Cluster::new("etcd-tls", 1) else {
        return;
    };
    let Some(etcdctl) = require_tool("etcdctl", "etcd-client") else {
        return;
    };
    let Some([ca, server_cert, server_key, client_cert, client_key]) = make_certs(etcd.dir.path())
    else {
        return;
    };
    etcd.scheme = "https";
    etcd.extra = vec![
        "--cert-file".into(),
        path_str(&server_cert),
        "--key-file".into(),
        path_str(&server_key),
        "--trusted-ca-file".into(),
        path_str(&ca),
        "--client-cert-auth".into(),
    ];
    etcd.start(0);
    // etcdctl over TLS: waits for the member, then writes the key.
    let started = Instant::now();
    loop {
        let out = Command::new(&etcdctl)
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &etcd.url(0), "--dial-timeout", "2s"])
            .args([
                "--cacert",
                &path_str(&ca),
                "--cert",
                &path_str(&client_cert),
                "--key",
                &path_str(&client_key),
            ])
            .args(["put", "tls/brokers", "secure.example:4222"])
            .output()
            .expect("etcdctl");
        if out.status.success() {
            break;
        }
        assert!(
            started.elapsed() < START_LIMIT,
            "etcdctl put failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            etcd.log(0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let dir = etcd_dir("etcd-tls-p");
    let base = [set("endpoints", etcd.url(0)), set("key", "tls/brokers")];
    let mut sets = base.to_vec();
    sets.extend([
        set("tls_ca", path_str(&ca)),
        set("tls_cert", path_str(&client_cert)),
        set("tls_key", path_str(&client_key)),
    ]);
    let run = run_targets(&dir, &sets, "20s");
    assert_eq!(servers(&run), ["nats://secure.example:4222"]);

    // Without the test CA (system roots) the server's certificate is refused.
    let mut sets = base.to_vec();
    sets.extend([
        set("tls_cert", path_str(&client_cert)),
        set("tls_key", path_str(&client_key)),
    ]);
    let run = run_targets(&dir, &sets, "2s");
    run.failed(1);
    run.stderr_has("try 1 failed").stderr_has(
        "the member's certificate is not signed by a CA this plugin trusts: set plugin.provtarget.etcd.tls_ca",
    );

    // Without a client certificate etcd refuses the connection: the fix is named.
    let mut sets = base.to_vec();
    sets.push(set("tls_ca", path_str(&ca)));
    let run = run_targets(&dir, &sets, "2s");
    run.failed(1);
    run.stderr_has("try 1 failed")
        .stderr_has(&etcd.url(0))
        .stderr_has("set plugin.provtarget.etcd.tls_cert and plugin.provtarget.etcd.tls_key");

    // The TLS port spoken to in clear: the fix is https://.
    let clear = etcd.url(0).replacen("https://", "http://", 1);
    let run = run_targets(
        &dir,
        &[set("endpoints", &clear), set("key", "tls/brokers")],
        "2s",
    );
    run.failed(1);
    run.stderr_has("try 1 failed").stderr_has(&format!(
        "write https:// for {clear} in plugin.provtarget.etcd.endpoints"
    ));
}
