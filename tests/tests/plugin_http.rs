//! The HTTP resolver plugin (`provtarget-http`) through the real loader and the real
//! `provtarget` binary, against a small metadata server on 127.0.0.1 started by each
//! test (AWS IMDSv2, GCP and Azure emulation, failures, silence, proxies).
mod common;
use common::*;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

const HTTP: &str = "HTTP Provisioning Target";
const PACKAGE: &str = "provtarget-http";

// ---------------------------------------------------------------------------------
// A tiny metadata server: std TcpListener, a thread per connection, one request per
// connection (`Connection: close`).
// ---------------------------------------------------------------------------------

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    /// Path and query, e.g. `/latest/user-data`.
    target: String,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server does with a request.
enum Answer {
    Reply(u16, &'static str, Vec<u8>),
    /// Keep the connection open and never answer.
    Silent,
}

fn reply(status: u16, reason: &'static str, body: impl Into<Vec<u8>>) -> Answer {
    Answer::Reply(status, reason, body.into())
}

type Handler = dyn Fn(&Req, usize) -> Answer + Send + Sync;

struct MetaServer {
    port: u16,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Req>>>,
    accept: Option<thread::JoinHandle<()>>,
}

impl MetaServer {
    /// Starts on a free port; `handler(request, n)` answers the `n`th request (from 1).
    fn start(handler: impl Fn(&Req, usize) -> Answer + Send + Sync + 'static) -> MetaServer {
        Self::start_on(TcpListener::bind("127.0.0.1:0").expect("bind"), handler)
    }

    fn start_on(
        listener: TcpListener,
        handler: impl Fn(&Req, usize) -> Answer + Send + Sync + 'static,
    ) -> MetaServer {
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let held = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let accept = {
            let (stop, connections, requests) =
                (stop.clone(), connections.clone(), requests.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (handler, requests, held) =
                        (handler.clone(), requests.clone(), held.clone());
                    thread::spawn(move || serve(stream, &*handler, &requests, &held));
                }
                // Closing the silent connections ends clients still waiting on them.
                for s in held.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            })
        };
        MetaServer {
            port,
            stop,
            connections,
            requests,
            accept: Some(accept),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Req> {
        self.requests.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for MetaServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    requests: &Mutex<Vec<Req>>,
    held: &Mutex<Vec<TcpStream>>,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || headers.len() > 100 {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let req = Req {
        method,
        target,
        headers,
    };
    let body_len: u64 = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let _ = std::io::copy(
        &mut (&mut reader).take(body_len.min(1 << 16)),
        &mut std::io::sink(),
    );
    let n = {
        let mut all = requests.lock().unwrap();
        all.push(req.clone());
        all.len()
    };
    match handler(&req, n) {
        Answer::Reply(status, reason, body) => {
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
            let _ = s.flush();
        }
        Answer::Silent => held.lock().unwrap().push(stream),
    }
}

// ---------------------------------------------------------------------------------
// Running the binary.
// ---------------------------------------------------------------------------------

fn http_dir(label: &str) -> TempDir {
    plugin_dir(label, &[PACKAGE])
}

fn targets_env(dir: &TempDir, sets: &[String], extra: &[&str], env: &[(&str, &str)]) -> Run {
    let d = path_str(dir.path());
    provtarget_env(&plugin_args("targets", &d, sets, extra), env)
}

fn targets(dir: &TempDir, sets: &[String], extra: &[&str]) -> Run {
    targets_in(dir, sets, extra)
}

fn set(key: &str, value: impl AsRef<str>) -> String {
    format!("plugin.provtarget.http.{key}={}", value.as_ref())
}

fn servers(run: &Run) -> serde_json::Value {
    let v = run.json();
    assert_eq!(v["resolver"], HTTP, "{v:#}");
    v["servers"].clone()
}

// ---------------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------------

#[test]
fn targets_from_an_array_a_comma_string_and_a_single_string() {
    let server = MetaServer::start(|req, _| match req.target.as_str() {
        "/array" => reply(
            200,
            "OK",
            r#"{"brokers": ["a.example:4222", "tls://b.example:4223"]}"#,
        ),
        "/comma" => reply(
            200,
            "OK",
            r#"{"x": {"brokers": "c.example:4222, d.example:4223"}}"#,
        ),
        "/single" => reply(200, "OK", r#"{"brokers": "e.example:4222"}"#),
        _ => reply(404, "Not Found", "{}"),
    });
    let dir = http_dir("http-shapes");
    let cases = [
        (
            "/array",
            "/brokers",
            vec!["nats://a.example:4222", "tls://b.example:4223"],
        ),
        (
            "/comma",
            "/x/brokers",
            vec!["nats://c.example:4222", "nats://d.example:4223"],
        ),
        ("/single", "/brokers", vec!["nats://e.example:4222"]),
    ];
    for (path, pointer, want) in cases {
        let run = targets(
            &dir,
            &[set("url", server.url(path)), set("pointer", pointer)],
            &["--timeout", "10s", "--json"],
        );
        run.ok();
        assert_eq!(servers(&run), serde_json::json!(want), "{path}");
    }
    assert_eq!(server.requests().len(), 3);
    assert!(server.requests().iter().all(|r| r.method == "GET"));
}

/// IMDSv2: `PUT /latest/api/token` with a TTL header gives a token; the GET must carry
/// it, and is refused with 401 otherwise.
fn imdsv2() -> MetaServer {
    const TOKEN: &str = "AQAEAimds-t0ken-value==";
    MetaServer::start(|req, _| match (req.method.as_str(), req.target.as_str()) {
        ("PUT", "/latest/api/token") => match req.header("X-aws-ec2-metadata-token-ttl-seconds") {
            Some("21600") => reply(200, "OK", TOKEN),
            _ => reply(400, "Bad Request", ""),
        },
        (_, "/latest/api/token") => reply(405, "Method Not Allowed", ""),
        ("GET", "/latest/user-data") => match req.header("X-aws-ec2-metadata-token") {
            Some(TOKEN) => reply(
                200,
                "OK",
                r#"{"brokers": ["prov1.example.net:4222", "prov2.example.net:4222"]}"#,
            ),
            _ => reply(401, "Unauthorized", ""),
        },
        _ => reply(404, "Not Found", ""),
    })
}

fn aws_sets(server: &MetaServer) -> Vec<String> {
    vec![
        set("url", server.url("/latest/user-data")),
        set("pointer", "/brokers"),
        set("token.url", server.url("/latest/api/token")),
        set("token.header.X-aws-ec2-metadata-token-ttl-seconds", "21600"),
        set("token.into", "X-aws-ec2-metadata-token"),
    ]
}

#[test]
fn aws_imdsv2_token_flow() {
    let server = imdsv2();
    let dir = http_dir("http-aws");
    let run = targets(
        &dir,
        &aws_sets(&server),
        &["--timeout", "10s", "--json", "--log-level", "trace"],
    );
    run.ok();
    assert_eq!(
        servers(&run),
        serde_json::json!([
            "nats://prov1.example.net:4222",
            "nats://prov2.example.net:4222"
        ])
    );
    let seen: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.method, r.target))
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT".to_string(), "/latest/api/token".to_string()),
            ("GET".to_string(), "/latest/user-data".to_string())
        ]
    );
    assert!(
        !run.stderr.contains("t0ken"),
        "token logged:\n{}",
        run.stderr
    );

    // Without the token step the server refuses the GET: the 401 is logged.
    let sets: Vec<String> = aws_sets(&server).into_iter().take(2).collect();
    let run = targets(&dir, &sets, &["--timeout", "1500ms"]);
    run.failed(1);
    run.stderr_has(&format!(
        "GET {}: 401 Unauthorized",
        server.url("/latest/user-data")
    ));
}

#[test]
fn gcp_and_azure_metadata_headers() {
    let server = MetaServer::start(|req, _| match req.target.as_str() {
        "/computeMetadata/v1/instance/attributes/?recursive=true" => {
            match req.header("Metadata-Flavor") {
                Some("Google") => reply(
                    200,
                    "OK",
                    r#"{"brokers": "gcp1.example.net:4222,gcp2.example.net:4222", "ssh-keys": "x"}"#,
                ),
                _ => reply(403, "Forbidden", ""),
            }
        }
        "/metadata/instance/compute?api-version=2021-02-01" => match req.header("Metadata") {
            Some("true") => reply(
                200,
                "OK",
                r#"{"tagsList": [{"name": "brokers", "value": "azure.example.net:4222"}]}"#,
            ),
            _ => reply(
                400,
                "Bad Request",
                r#"{"error": "Bad request. Required metadata header not specified"}"#,
            ),
        },
        _ => reply(404, "Not Found", ""),
    });
    let dir = http_dir("http-cloud");
    let gcp = vec![
        set(
            "url",
            server.url("/computeMetadata/v1/instance/attributes/?recursive=true"),
        ),
        set("pointer", "/brokers"),
    ];
    let azure = vec![
        set(
            "url",
            server.url("/metadata/instance/compute?api-version=2021-02-01"),
        ),
        set("pointer", "/tagsList/0/value"),
    ];

    // Without the headers both services refuse.
    let run = targets(&dir, &gcp, &["--timeout", "1500ms"]);
    run.failed(1);
    run.stderr_has(": 403 Forbidden; the service refused the request: it may want a header (plugin.provtarget.http.header.<Name>)");
    // Azure says which header it wants: the fix is named, and (a header the
    // configuration does not send cannot appear by waiting) reported without retries.
    let run = targets(&dir, &azure, &["--timeout", "1500ms"]);
    run.failed(1);
    run.stderr_has(": 400 Bad Request; the service wants the header Metadata: true: set plugin.provtarget.http.header.Metadata = true")
        .stderr_lacks("try 1 failed")
        .stderr_lacks("context deadline exceeded");

    let mut with = gcp.clone();
    with.push(set("header.Metadata-Flavor", "Google"));
    let run = targets(&dir, &with, &["--timeout", "10s", "--json"]);
    run.ok();
    assert_eq!(
        servers(&run),
        serde_json::json!([
            "nats://gcp1.example.net:4222",
            "nats://gcp2.example.net:4222"
        ])
    );

    let mut with = azure.clone();
    with.push(set("header.Metadata", "true"));
    let run = targets(&dir, &with, &["--timeout", "10s", "--json"]);
    run.ok();
    assert_eq!(
        servers(&run),
        serde_json::json!(["nats://azure.example.net:4222"])
    );
}

#[test]
fn a_503_is_retried_and_logged_once_with_the_cause() {
    let server = MetaServer::start(|_, n| match n {
        1 => reply(503, "Service Unavailable", "busy"),
        2 => reply(200, "OK", "{not json"),
        _ => reply(200, "OK", r#"{"brokers": ["ok.example:4222"]}"#),
    });
    let dir = http_dir("http-503");
    let run = targets(
        &dir,
        &[set("url", server.url("/x")), set("pointer", "/brokers")],
        &["--timeout", "10s", "--json"],
    );
    run.ok();
    assert_eq!(servers(&run), serde_json::json!(["nats://ok.example:4222"]));
    let url = server.url("/x");
    let lines = |needle: &str| run.stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines(&format!("try 1 failed: GET {url}: 503 Service Unavailable")),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        lines(&format!(
            "try 2 failed: GET {url}: the answer is not valid JSON"
        )),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(lines("failed:"), 2, "{}", run.stderr);
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn a_server_down_at_start_is_retried_until_it_is_up() {
    // Reserve a port, release it, and start the server there only once provtarget has
    // failed to connect at least once.
    let port = provtarget_testsupport::free_port();
    let url = format!("http://127.0.0.1:{port}/late");
    let dir = http_dir("http-late");
    let sets = vec![set("url", &url), set("pointer", "/brokers")];
    let runner = {
        let d = path_str(dir.path());
        thread::spawn(move || {
            provtarget(&plugin_args(
                "targets",
                &d,
                &sets,
                &["--timeout", "20s", "--json"],
            ))
        })
    };
    thread::sleep(Duration::from_millis(1500));
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the reserved port was taken");
    let server = MetaServer::start_on(listener, |_, _| {
        reply(200, "OK", r#"{"brokers": "late.example:4222"}"#)
    });
    let run = runner.join().unwrap();
    run.ok();
    assert_eq!(
        servers(&run),
        serde_json::json!(["nats://late.example:4222"])
    );
    run.stderr_has(&format!("try 1 failed: GET {url}: Connection Failed"));
    assert!(!server.requests().is_empty());
}

#[test]
fn a_server_that_never_answers_is_ended_by_the_timeout_with_the_last_error() {
    let server = MetaServer::start(|_, _| Answer::Silent);
    let dir = http_dir("http-silent");
    let url = server.url("/x");

    // Timeouts (500 ms a request) fail the tries, each logged; the deadline ends the call, and the
    // plugin honours the cancellation (the host did not have to abandon it).
    let run = targets(
        &dir,
        &[
            set("url", &url),
            set("pointer", "/b"),
            set("connect_timeout", "200ms"),
            set("read_timeout", "300ms"),
        ],
        &["--timeout", "2s"],
    );
    run.deadline_honoured()
        .stderr_has(&format!("try 1 failed: GET {url}: "))
        .stderr_has("timed out");

    // A read timeout far beyond the deadline: only cancellation can end the call.
    let started = Instant::now();
    let run = targets(
        &dir,
        &[
            set("url", &url),
            set("pointer", "/b"),
            set("read_timeout", "60s"),
        ],
        &["--timeout", "1s"],
    );
    eprintln!(
        "silent server, --timeout 1s: provtarget ran {:?}",
        started.elapsed()
    );
    run.deadline_honoured();
    assert!(server.connections() >= 2);
}

#[test]
fn proxy_environment_variables_are_ignored() {
    // The "proxy" records connections and answers nothing useful.
    let proxy = MetaServer::start(|_, _| reply(502, "Bad Gateway", ""));
    let server =
        MetaServer::start(|_, _| reply(200, "OK", r#"{"brokers": ["direct.example:4222"]}"#));
    let dir = http_dir("http-proxy");
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let env: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|k| (k, proxy_url.as_str()))
    .collect();
    let run = targets_env(
        &dir,
        &[set("url", server.url("/x")), set("pointer", "/brokers")],
        &["--timeout", "10s", "--json"],
        &env,
    );
    run.ok();
    assert_eq!(
        servers(&run),
        serde_json::json!(["nats://direct.example:4222"])
    );
    assert_eq!(server.requests().len(), 1);
    assert_eq!(
        proxy.connections(),
        0,
        "the proxy was used: {:?}",
        proxy.requests()
    );
}

#[test]
fn an_oversized_answer_is_refused_with_the_numbers() {
    let server = MetaServer::start(|_, _| {
        let mut body = br#"{"brokers": ["a.example:4222"], "pad": ""#.to_vec();
        body.resize(2 * 1024 * 1024 - 2, b'x');
        body.extend_from_slice(b"\"}");
        reply(200, "OK", body)
    });
    let dir = http_dir("http-big");
    let run = targets(
        &dir,
        &[set("url", server.url("/big")), set("pointer", "/brokers")],
        &["--timeout", "1500ms"],
    );
    run.failed(1);
    run.stderr_has(&format!(
        "GET {}: the answer is 2097152 bytes, more than the limit of 1048576 bytes",
        server.url("/big")
    ));
}

#[test]
fn garbage_targets_are_refused_naming_the_source() {
    let server = MetaServer::start(|_, _| {
        reply(200, "OK", r#"{"brokers": ["ok.example:4222", "no-port"]}"#)
    });
    let dir = http_dir("http-garbage");
    let run = targets(
        &dir,
        &[set("url", server.url("/x")), set("pointer", "/brokers")],
        &["--timeout", "1500ms"],
    );
    run.failed(1);
    assert!(
        run.stderr.contains(&format!(
            "GET {}: /brokers/1 = \\\"no-port\\\" is not host:port or scheme://host:port: missing port",
            server.url("/x")
        )) || run.stderr.contains(&format!(
            "GET {}: /brokers/1 = \"no-port\" is not host:port or scheme://host:port: missing port",
            server.url("/x")
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let dir = http_dir("http-badconf");
    let run = targets(
        &dir,
        &[
            set("url", "http://127.0.0.1:9/x"),
            set("pointer", "brokers"),
        ],
        &["--timeout", "2s"],
    );
    assert_ne!(run.code, Some(0), "{run:#?}");
    assert!(
        run.stderr
            .contains("plugin.provtarget.http.pointer = \\\"brokers\\\" is not valid")
            || run
                .stderr
                .contains("plugin.provtarget.http.pointer = \"brokers\" is not valid"),
        "{}",
        run.stderr
    );
    let run = targets(
        &dir,
        &[set("url", "ftp://127.0.0.1/x")],
        &["--timeout", "2s"],
    );
    assert_ne!(run.code, Some(0), "{run:#?}");
    run.stderr_has("plugin.provtarget.http.url = ");
}

#[test]
fn buildinfo_lists_the_plugin_with_secrets_masked() {
    let dir = http_dir("http-bi");
    let d = path_str(dir.path());
    let sets = [
        set("url", "http://169.254.169.254/latest/user-data"),
        set("pointer", "/brokers"),
        set("header.Authorization", "Bearer s3cr3t-bearer"),
        set("header.Metadata-Flavor", "Google"),
        // Secret by the plugin's rule only (not the host's key policy): buildinfo's
        // sources must mask it too.
        set("header.X-Session-Id", "s3cr3t-session"),
        set("token.url", "http://169.254.169.254/latest/api/token"),
        set("token.header.X-Api-Key", "k3y-s3cr3t"),
        set("token.into", "X-aws-ec2-metadata-token"),
    ];
    let mut a = vec!["buildinfo", "--json", "--plugin-dir", d.as_str()];
    for s in &sets {
        a.push("--set");
        a.push(s);
    }
    let run = provtarget(&a);
    run.ok();
    let v = run.json();
    assert_eq!(v["resolver"]["name"], HTTP, "{v:#}");
    let plugin = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["path"]
                .as_str()
                .unwrap()
                .ends_with("libprovtarget_http.so")
        })
        .unwrap_or_else(|| panic!("plugin missing: {v:#}"));
    assert_eq!(plugin["status"], "loaded", "{plugin:#}");
    assert_eq!(plugin["name"], HTTP);
    let settings = &v["settings"];
    assert_eq!(
        settings["plugin.provtarget.http.url"], "http://169.254.169.254/latest/user-data",
        "{settings:#}"
    );
    assert_eq!(settings["plugin.provtarget.http.pointer"], "/brokers");
    assert_eq!(
        settings["plugin.provtarget.http.header.Metadata-Flavor"],
        "Google"
    );
    assert_eq!(
        settings["plugin.provtarget.http.header.Authorization"],
        "*****"
    );
    assert_eq!(
        settings["plugin.provtarget.http.token.header.X-Api-Key"],
        "*****"
    );
    assert!(
        !run.stdout.contains("s3cr3t"),
        "secret shown:\n{}",
        run.stdout
    );
    assert!(
        !run.stderr.contains("s3cr3t"),
        "secret logged:\n{}",
        run.stderr
    );

    // The text report too.
    let a: Vec<&str> = a.into_iter().filter(|x| *x != "--json").collect();
    let run = provtarget(&a);
    run.ok();
    run.stdout_has(&format!(
        "Provisioning Target Resolver: {HTTP} version 1.0.0"
    ));
    run.stdout_has("plugin.provtarget.http.header.Authorization");
    assert!(
        !run.stdout.contains("s3cr3t"),
        "secret shown:\n{}",
        run.stdout
    );
}
