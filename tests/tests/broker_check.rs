//! The broker check (`plugin.provtarget.broker_check`): real `nats-server`s (plain,
//! and with a TLS block and certificates made by `openssl`), and servers written here
//! that are not NATS (HTTP, silent, an endless first line, a 1 MB INFO, INFO with
//! invalid JSON, a TLS-first server), all on 127.0.0.1 and started by the tests,
//! through the real `provtarget` binary.
mod common;
use common::*;

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use provtarget_testsupport::{free_port, require_tool, wait_for_tcp, ServerProcess};
use serde_json::Value;

const JWT: &str = "Choria JWT Resolver";

// ---------------------------------------------------------------------------------
// Servers

/// A real nats-server on 127.0.0.1 (`tls`: with a TLS block using these certificate
/// and key files), stopped by pid when dropped. `None` when nats-server is missing
/// outside CI (a failure under CI).
struct Nats {
    port: u16,
    _proc: ServerProcess,
    _dir: TempDir,
}

impl Nats {
    fn start(label: &str, tls: Option<(&Path, &Path)>) -> Option<Nats> {
        let bin = require_tool("nats-server", "nats-server")?;
        let dir = TempDir::new(label);
        let port = free_port();
        let mut conf = format!("listen: \"127.0.0.1:{port}\"\n");
        if let Some((cert, key)) = tls {
            conf.push_str(&format!(
                "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
                cert.display(),
                key.display()
            ));
        }
        let conf_file = dir.write("nats.conf", conf);
        let mut cmd = Command::new(bin);
        cmd.arg("-c").arg(&conf_file);
        let log = dir.path().join("nats.log");
        let proc = ServerProcess::spawn("nats-server", cmd, Some(&log));
        wait_for_tcp("nats-server", port, Duration::from_secs(30));
        Some(Nats {
            port,
            _proc: proc,
            _dir: dir,
        })
    }
}

/// The version `nats-server --version` reports (`2.9.10` from `nats-server: v2.9.10`).
fn nats_version() -> String {
    let out = Command::new(require_tool("nats-server", "nats-server").unwrap())
        .arg("--version")
        .output()
        .expect("nats-server --version");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.trim()
        .rsplit('v')
        .next()
        .expect("a version")
        .to_string()
}

/// What a test server saw: one entry per connection, `(port, bytes received from the
/// client once it closed)`, in the order connections were accepted.
type Seen = Arc<Mutex<Vec<(u16, Option<usize>)>>>;

/// The connections `seen`, once at least `count` were accepted and each has ended
/// (the client closed it), within a liveness limit.
fn settled(seen: &Seen, count: usize) -> Vec<(u16, usize)> {
    let start = std::time::Instant::now();
    loop {
        let now = seen.lock().unwrap().clone();
        if now.len() >= count && now.iter().all(|(_, n)| n.is_some()) {
            return now.into_iter().map(|(p, n)| (p, n.unwrap_or(0))).collect();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "connections still open: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server on 127.0.0.1 written here: every connection is handed to `serve` on a
/// thread of its own. The bytes the client sent (read until it closes, at most 1 s)
/// are counted in `seen`.
fn fake(seen: &Seen, serve: fn(&mut TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::clone(seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let index = {
                let mut s = seen.lock().unwrap();
                s.push((port, None));
                s.len() - 1
            };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                serve(&mut conn);
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut got = Vec::new();
                let _ = conn.read_to_end(&mut got);
                seen.lock().unwrap()[index].1 = Some(got.len());
            });
        }
    });
    port
}

fn http(conn: &mut TcpStream) {
    let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
}

fn endless(conn: &mut TcpStream) {
    let chunk = [b'a'; 4096];
    while conn.write_all(&chunk).is_ok() {}
}

fn huge_info(conn: &mut TcpStream) {
    let padding = "x".repeat(1 << 20);
    let line = format!("INFO {{\"server_id\":\"NBIG\",\"padding\":\"{padding}\"}}\r\n");
    let _ = conn.write_all(line.as_bytes());
}

fn bad_json(conn: &mut TcpStream) {
    let _ = conn.write_all(b"INFO {\"server_id\": \"NBAD\", oops}\r\n");
}

fn good_info(conn: &mut TcpStream) {
    let _ = conn.write_all(b"INFO {\"server_id\":\"NFAKE\",\"version\":\"9.9.9\"}\r\n");
}

fn silent(conn: &mut TcpStream) {
    // Says nothing; the client's bytes (a TLS hello, on the second attempt) are read
    // and counted by `fake`.
    let _ = conn;
}

/// A closed port on 127.0.0.1.
fn closed_port() -> u16 {
    free_port()
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made by openssl in
/// `dir`: `(ca.pem, server.pem, server.key)`. `other` is a second, unrelated CA.
fn make_certs(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf, PathBuf)> {
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
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    let split = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
    for ca in ["ca", "other"] {
        let args = split(&format!(
            "req -x509 {ec} -keyout {ca}.key -out {ca}.pem -days 2 -subj /CN=provtarget-{ca}"
        ));
        run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let args = split(&format!(
        "req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
    ));
    run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    Some((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("other.pem"),
    ))
}

/// A TLS-first server on 127.0.0.1 (what nats-server ≥ 2.10 does with
/// `handshake_first`): the TLS handshake, then INFO over TLS.
fn tls_first(cert: &Path, key: &Path, seen: &Seen) -> u16 {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::clone(seen);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(tcp) = conn else { continue };
            seen.lock().unwrap().push((port, Some(0)));
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                // The first write completes the handshake first.
                let _ = tls.write_all(b"INFO {\"server_id\":\"NTLSFIRST\",\"version\":\"2.10.0\",\"tls_required\":true}\r\n");
                let _ = tls.flush();
                let mut rest = Vec::new();
                let _ = tls.read_to_end(&mut rest);
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------------
// Running provtarget

/// `provtarget targets` on the built-in resolver answering `brokers`, with `sets`.
fn targets(brokers: &[String], sets: &[&str], extra: &[&str]) -> Run {
    let dir = TempDir::new("bc-empty");
    let mut all = vec![
        format!("plugin.provtarget.broker_urls={}", brokers.join(",")),
        "plugin.provtarget.jwt_file=".to_string(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    targets_in(&dir, &all, extra)
}

fn url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

/// The `brokers` entry for `server`.
fn broker<'a>(v: &'a Value, server: &str) -> &'a Value {
    v["brokers"]
        .as_array()
        .unwrap_or_else(|| panic!("no brokers array: {v:#}"))
        .iter()
        .find(|b| b["server"] == server)
        .unwrap_or_else(|| panic!("no broker {server} in {v:#}"))
}

fn reason(v: &Value, server: &str) -> String {
    let b = broker(v, server);
    assert_eq!(b["passed"], false, "{b:#}");
    b["reason"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------------
// Tests

#[test]
fn nats_server_passes_and_a_closed_port_is_left_out_under_require() {
    let Some(nats) = Nats::start("bc-nats", None) else {
        return;
    };
    let good = url(nats.port);
    let closed = url(closed_port());
    let sets = ["plugin.provtarget.broker_check=require"];
    // A tls:// URL for a server that offers no TLS fails too.
    let tls = format!("tls://127.0.0.1:{}", nats.port);
    let run = targets(
        &[closed.clone(), good.clone(), tls.clone()],
        &sets,
        &["--json"],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["servers"], serde_json::json!([good]));
    assert_eq!(
        reason(&v, &tls),
        "the URL asks for TLS (tls://) but the server's INFO offers none (no tls_required or tls_available)"
    );
    let b = broker(&v, &good);
    assert_eq!(b["passed"], true, "{b:#}");
    assert_eq!(b["reason"], Value::Null);
    assert_eq!(b["version"], nats_version().as_str());
    assert!(
        b["server_id"].as_str().is_some_and(|s| s.len() > 10),
        "{b:#}"
    );
    assert_eq!(b["tls"], false);
    assert_eq!(b["resolver"], JWT);
    assert!(b["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{b:#}");
    assert_eq!(reason(&v, &closed), "connection refused");
    run.stderr_has(&format!(
        "broker {closed} failed the broker check and is left out: connection refused"
    ));

    // Text: a line per broker under the servers.
    let run = targets(&[closed.clone(), good.clone()], &sets, &[]);
    run.ok()
        .stdout_has(&format!(
            "Provisioning using 1 broker(s):\n   {good}\nBroker check (require):\n   {closed}  failed: connection refused (tls=no "
        ))
        .stdout_has(&format!(
            "   {good}  ok  server_id={}",
            b["server_id"].as_str().unwrap()
        ))
        .stdout_has(&format!("version={} tls=no ", nats_version()));
}

#[test]
fn nats_server_with_a_tls_block_passes_after_the_upgrade() {
    let dir = TempDir::new("bc-certs");
    let Some((ca, cert, key, other)) = make_certs(dir.path()) else {
        return;
    };
    let Some(nats) = Nats::start("bc-nats-tls", Some((&cert, &key))) else {
        return;
    };
    let plain = url(nats.port);
    let tls = format!("tls://127.0.0.1:{}", nats.port);
    // No CA configured: any certificate is accepted (anonymous TLS).
    let run = targets(
        &[plain.clone(), tls.clone()],
        &["plugin.provtarget.broker_check=require"],
        &["--json"],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["servers"], serde_json::json!([plain, tls]));
    for server in [&plain, &tls] {
        let b = broker(&v, server);
        assert_eq!(b["passed"], true, "{b:#}");
        assert_eq!(b["tls"], true, "{b:#}");
        assert_eq!(b["version"], nats_version().as_str());
    }

    // With the right CA bundle, verified.
    let with_ca = |ca: &Path| {
        targets(
            std::slice::from_ref(&plain),
            &[
                "plugin.provtarget.broker_check=require",
                &format!("plugin.provtarget.broker_check_ca={}", ca.display()),
            ],
            &["--json"],
        )
    };
    let run = with_ca(&ca);
    run.ok();
    assert_eq!(broker(&run.json(), &plain)["tls"], true);
    // With another CA, the handshake fails and require refuses the answer.
    let run = with_ca(&other);
    run.failed(1)
        .stderr_has("no broker passed the broker check")
        .stderr_has(&format!(
            "{plain}: TLS handshake failed: invalid peer certificate"
        ));
    let why = reason(&run.json(), &plain);
    assert!(
        why.starts_with("TLS handshake failed: invalid peer certificate"),
        "{why}"
    );
    // A CA bundle that is not one: named, with the fix.
    let run = with_ca(&dir.write("junk.pem", "not a certificate\n"));
    run.failed(1).stderr_has(&format!(
        "plugin.provtarget.broker_check_ca = {} cannot be used",
        dir.path().join("junk.pem").display()
    ));
}

#[test]
fn servers_that_are_not_nats_fail_each_with_its_reason() {
    let seen: Seen = Arc::default();
    let (http, endless, huge, bad) = (
        url(fake(&seen, http)),
        url(fake(&seen, endless)),
        url(fake(&seen, huge_info)),
        url(fake(&seen, bad_json)),
    );
    let closed = url(closed_port());
    let all = [
        http.clone(),
        endless.clone(),
        huge.clone(),
        bad.clone(),
        closed.clone(),
    ];
    let run = targets(
        &all,
        &["plugin.provtarget.broker_check=require"],
        &["--json"],
    );
    run.failed(1);
    let v = run.json();
    assert_eq!(
        reason(&v, &http),
        "not NATS: first line \"HTTP/1.0 200 OK\""
    );
    let long = reason(&v, &endless);
    assert!(
        long.starts_with("not NATS: first line longer than 64 KiB (it starts \"aaaa"),
        "{long}"
    );
    let long = reason(&v, &huge);
    assert!(
        long.starts_with(
            "not NATS: first line longer than 64 KiB (it starts \"INFO {\"server_id\":\"NBIG\""
        ),
        "{long}"
    );
    assert!(
        reason(&v, &bad).starts_with("not NATS: INFO is not valid JSON ("),
        "{v:#}"
    );
    assert_eq!(reason(&v, &closed), "connection refused");
    // The resolver's failure names each broker and why, in the resolver's order.
    let error = v["error"].as_str().unwrap();
    let mut at = 0;
    for server in &all {
        let i = error[at..]
            .find(&format!("{server}: "))
            .unwrap_or_else(|| panic!("{server} missing or out of order in {error}"));
        at += i;
    }
    assert_eq!(v["kind"], "failed");
    run.stderr_has(&format!("{http}: not NATS: first line \"HTTP/1.0 200 OK\""));
    // Nothing was ever sent to any of them (no CONNECT, no credentials).
    let seen = settled(&seen, 4);
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|(_, sent)| *sent == 0), "{seen:?}");
}

#[test]
fn silent_servers_get_one_tls_first_attempt_all_at_once() {
    let seen: Seen = Arc::default();
    let quiet: Vec<u16> = (0..3).map(|_| fake(&seen, silent)).collect();
    let brokers: Vec<String> = quiet.iter().map(|p| url(*p)).collect();
    let run = targets(
        &brokers,
        &[
            "plugin.provtarget.broker_check=require",
            "plugin.provtarget.broker_check_timeout=1s",
        ],
        &["--json"],
    );
    run.failed(1);
    let v = run.json();
    for b in &brokers {
        assert_eq!(reason(&v, b), "no INFO within 1s", "{v:#}");
        assert_eq!(broker(&v, b)["tls"], false);
    }
    // Two connections each: in clear, then TLS-first (which sent a TLS hello, bytes
    // starting 0x16); and the brokers were checked at once, not one after another:
    // every first connection came before any second one.
    let seen = settled(&seen, 6);
    assert_eq!(seen.len(), 6, "{seen:?}");
    let firsts: std::collections::BTreeSet<u16> = seen[..3].iter().map(|(p, _)| *p).collect();
    assert_eq!(firsts.len(), 3, "checked one after another: {seen:?}");
    for port in &quiet {
        let conns: Vec<usize> = seen
            .iter()
            .filter(|(p, _)| p == port)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(conns.len(), 2, "{seen:?}");
        assert_eq!(conns[0], 0, "something was sent in clear: {seen:?}");
        assert!(conns[1] > 0, "no TLS hello on the second attempt: {seen:?}");
    }
}

#[test]
fn a_tls_first_server_passes() {
    let dir = TempDir::new("bc-tls-first");
    let Some((ca, cert, key, _)) = make_certs(dir.path()) else {
        return;
    };
    let seen: Seen = Arc::default();
    let port = tls_first(&cert, &key, &seen);
    let server = url(port);
    let run = targets(
        std::slice::from_ref(&server),
        &[
            "plugin.provtarget.broker_check=require",
            "plugin.provtarget.broker_check_timeout=1s",
            &format!("plugin.provtarget.broker_check_ca={}", ca.display()),
        ],
        &["--json"],
    );
    run.ok();
    let v = run.json();
    let b = broker(&v, &server);
    assert_eq!(b["passed"], true, "{b:#}");
    assert_eq!(b["tls"], true);
    assert_eq!(b["server_id"], "NTLSFIRST");
    assert_eq!(b["version"], "2.10.0");
    assert_eq!(seen.lock().unwrap().len(), 2, "one clear, one TLS-first");
}

#[test]
fn a_require_failure_moves_the_chain_on() {
    let Some(nats) = Nats::start("bc-chain", None) else {
        return;
    };
    let seen: Seen = Arc::default();
    let http = url(fake(&seen, http));
    let good = url(nats.port);
    let dir = plugin_dir("bc-chain", &["provtarget-testkit"]);
    let run = targets_in(
        &dir,
        &[
            format!("testkit.targets={http}"),
            format!("plugin.provtarget.broker_urls={good}"),
            "plugin.provtarget.jwt_file=".into(),
            "plugin.provtarget.broker_check=require".into(),
        ],
        &["--resolver", "Test Kit", "--resolver", "default", "--json"],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["resolver"], JWT);
    assert_eq!(v["servers"], serde_json::json!([good]));
    let failed = &v["failed"][0];
    assert_eq!(failed["resolver"], "Test Kit");
    assert_eq!(failed["kind"], "failed");
    assert!(
        failed["error"].as_str().unwrap().ends_with(&format!(
            "no broker passed the broker check (plugin.provtarget.broker_check = require): {http}: not NATS: first line \"HTTP/1.0 200 OK\""
        )),
        "{failed:#}"
    );
    assert_eq!(broker(&v, &http)["resolver"], "Test Kit");
    assert_eq!(broker(&v, &good)["resolver"], JWT);
    assert_eq!(broker(&v, &good)["passed"], true);
}

#[test]
fn warn_keeps_every_broker_and_logs_each_failure_once() {
    let seen: Seen = Arc::default();
    let good = url(fake(&seen, good_info));
    let http = url(fake(&seen, http));
    let run = targets(
        &[http.clone(), good.clone()],
        &["plugin.provtarget.broker_check=warn"],
        &[],
    );
    run.ok()
        .stdout_has(&format!(
            "Provisioning using 2 broker(s):\n   {http}\n   {good}\nBroker check (warn):\n"
        ))
        .stdout_has(&format!(
            "   {good}  ok  server_id=NFAKE version=9.9.9 tls=no "
        ))
        .stdout_has(&format!(
            "   {http}  failed: not NATS: first line \"HTTP/1.0 200 OK\" (tls=no "
        ));
    let warning = format!("broker {http} failed the broker check: not NATS");
    assert_eq!(run.stderr.matches(&warning).count(), 1, "{}", run.stderr);
    assert!(
        !run.stderr.contains(&format!("broker {good}")),
        "{}",
        run.stderr
    );
}

#[test]
fn off_by_default_contacts_nobody() {
    let seen: Seen = Arc::default();
    let server = url(fake(&seen, good_info));
    let run = targets(std::slice::from_ref(&server), &[], &["--json"]);
    run.ok();
    let v = run.json();
    assert!(v.get("brokers").is_none(), "{v:#}");
    let run = targets(std::slice::from_ref(&server), &[], &[]);
    run.ok().stdout_lacks("Broker check");
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn bad_settings_are_named_with_the_fix() {
    let seen: Seen = Arc::default();
    let server = url(fake(&seen, good_info));
    // Typed on the command line: an error (exit 2) naming the key and the fix.
    targets(
        std::slice::from_ref(&server),
        &["plugin.provtarget.broker_check=maybe"],
        &[],
    )
    .failed(2)
    .stderr_has("plugin.provtarget.broker_check=\"maybe\": use off, warn or require");
    // From the environment: a warning naming the key and the fix, and the check stays
    // off.
    let dir = TempDir::new("bc-bad-env");
    let args = [
        "targets",
        "--config",
        "/dev/null",
        "--plugin-dir",
        &path_str(dir.path()),
        "--set",
        &format!("plugin.provtarget.broker_urls={server}"),
        "--set",
        "plugin.provtarget.jwt_file=",
    ];
    common::provtarget_env(
        &args,
        &[
            ("PROVTARGET_BROKER_CHECK", "maybe"),
            ("PROVTARGET_BROKER_CHECK_TIMEOUT", "soon"),
        ],
    )
    .ok()
    .stderr_has("plugin.provtarget.broker_check = \"maybe\" (environment variable PROVTARGET_BROKER_CHECK) ignored: use off, warn or require")
    .stderr_has("plugin.provtarget.broker_check_timeout = \"soon\" (environment variable PROVTARGET_BROKER_CHECK_TIMEOUT) ignored: \"soon\" is not a duration")
    .stdout_lacks("Broker check");
}

#[test]
fn a_signal_during_the_check_cancels_it_at_once() {
    let seen: Seen = Arc::default();
    let server = url(fake(&seen, silent));
    let dir = TempDir::new("bc-cancel");
    let mut child = Command::new(provtarget_testsupport::provtarget_bin())
        .args([
            "targets",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &path_str(dir.path()),
            "--set",
            &format!("plugin.provtarget.broker_urls={server}"),
            "--set",
            "plugin.provtarget.jwt_file=",
            "--set",
            "plugin.provtarget.broker_check=require",
            // Far longer than the liveness limit below: only the cancellation can end
            // the run in time.
            "--set",
            "plugin.provtarget.broker_check_timeout=10m",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start provtarget");
    // The check is running once the silent server has its connection.
    let start = std::time::Instant::now();
    while seen.lock().unwrap().is_empty() {
        assert!(start.elapsed() < Duration::from_secs(60), "no connection");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let waited = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if waited.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("provtarget did not end after SIGTERM during the broker check");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("using Choria JWT Resolver provisioning target plugin: context canceled"),
        "{stderr}"
    );
}
