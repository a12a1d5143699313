//! Failover rows (issue 21): the time one `provtarget targets` call takes when the
//! first DNS server or etcd member is dead, against the same call with only the live
//! server listed (the baseline, measured in the same run, alternating).
//!
//! Everything runs on 127.0.0.1: a real dnsmasq and a real etcd as the live servers; a
//! "silent" DNS server is a bound UDP socket that never answers, a "hung" etcd member a
//! listening TCP socket that never accepts nor answers, a "dead" member a closed port.
//! "sequential" rows set the failover delay to the query timeout, which is how the
//! plugins behaved before issue 21 (the next server only after the whole timeout).
use std::{
    net::{TcpListener, UdpSocket},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use provtarget_testsupport::{
    cdylib_in, free_port, require_tool, wait_for_tcp, Profile, ServerProcess, TempDir,
};

/// Prints the failover rows, `runs` calls per figure.
pub fn rows(provtarget: &Path, runs: usize) {
    let dir = TempDir::new("bench-failover");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugin dir");
    for package in ["provtarget-dns-srv", "provtarget-etcd"] {
        let lib = cdylib_in(package, Profile::Release);
        std::fs::copy(&lib, plugins.join(lib.file_name().unwrap())).expect("copy plugin");
    }
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).expect("cache dir");
    set_mode(dir.path(), 0o755);
    set_mode(&plugins, 0o755);
    set_mode(&cache, 0o755);
    for entry in std::fs::read_dir(&plugins).unwrap() {
        set_mode(&entry.unwrap().path(), 0o644);
    }
    let base = vec![
        "--config".to_string(),
        "/dev/null".into(),
        "--plugin-dir".into(),
        plugins.display().to_string(),
        "--set".into(),
        format!("plugin.provtarget.cache_dir={}", cache.display()),
        "--timeout".into(),
        "20s".into(),
    ];
    dns_rows(provtarget, &base, dir.path(), runs);
    etcd_rows(provtarget, &base, dir.path(), runs);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn dns_rows(provtarget: &Path, base: &[String], dir: &Path, runs: usize) {
    let Some(dnsmasq) = require_tool("dnsmasq", "dnsmasq") else {
        return;
    };
    let port = free_port();
    let mut cmd = Command::new(dnsmasq);
    cmd.args([
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--local=/example.net/",
        "--srv-host=_choria-provisioner._tcp.example.net,prov1.example.net,4222,10,60",
    ])
    .arg(format!("--port={port}"))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
    let _dnsmasq = ServerProcess::spawn("dnsmasq", cmd, None);
    wait_for_tcp("dnsmasq", port, Duration::from_secs(10));
    let silent = UdpSocket::bind("127.0.0.1:0").expect("silent socket");
    let silent = silent.local_addr().unwrap();

    let resolver = "DNS SRV Provisioning Target";
    let common = |servers: String, failover: Option<&str>| {
        let mut args = base.to_vec();
        args.extend([
            "--resolver".into(),
            resolver.into(),
            "--set".into(),
            "plugin.provtarget.dns_srv.name=_choria-provisioner._tcp.example.net".into(),
            "--set".into(),
            format!("plugin.provtarget.dns_srv.servers={servers}"),
        ]);
        if let Some(f) = failover {
            args.extend([
                "--set".into(),
                format!("plugin.provtarget.dns_srv.failover_after={f}"),
            ]);
        }
        args
    };
    let live = common(format!("127.0.0.1:{port}"), None);
    let after = common(format!("{silent}, 127.0.0.1:{port}"), None);
    let before = common(format!("{silent}, 127.0.0.1:{port}"), Some("2s"));
    compare(
        provtarget,
        "dns_srv: silent first server, failover after 250ms (baseline: live server only)",
        &live,
        &after,
        runs,
        "≤ baseline + ~250 ms",
    );
    compare(
        provtarget,
        "dns_srv: silent first server, sequential (failover_after = timeout 2s; the old behaviour)",
        &live,
        &before,
        runs.min(7),
        "(before)",
    );
}

fn etcd_rows(provtarget: &Path, base: &[String], dir: &Path, runs: usize) {
    let Some(etcd) = require_tool("etcd", "etcd-server") else {
        return;
    };
    let client = free_port();
    let peer = free_port();
    let data = dir.join("etcd-data");
    let mut cmd = Command::new(etcd);
    cmd.arg("--name=bench")
        .arg(format!("--data-dir={}", data.display()))
        .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
        .arg(format!(
            "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
        ))
        .arg(format!("--initial-cluster=bench=http://127.0.0.1:{peer}"));
    let _etcd = ServerProcess::spawn("etcd", cmd, Some(&dir.join("etcd.log")));
    wait_for_tcp("etcd", client, Duration::from_secs(20));
    // Put the key (retrying while etcd elects itself leader).
    let body = r#"{"key":"YnJva2Vycw==","value":"cHJvdjEuZXhhbXBsZS5uZXQ6NDIyMg=="}"#;
    let started = Instant::now();
    while !put(client, body) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "cannot put the etcd key"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A member that accepts connections (the kernel's backlog) and never answers.
    let hung = TcpListener::bind("127.0.0.1:0").expect("hung listener");
    let hung = hung.local_addr().unwrap();
    let resolver = "etcd Provisioning Target";
    let common = |endpoints: String| {
        let mut args = base.to_vec();
        args.extend([
            "--resolver".into(),
            resolver.into(),
            "--set".into(),
            "plugin.provtarget.etcd.key=brokers".into(),
            "--set".into(),
            format!("plugin.provtarget.etcd.endpoints={endpoints}"),
        ]);
        args
    };
    let live = common(format!("http://127.0.0.1:{client}"));
    let hung_first = common(format!("http://{hung}, http://127.0.0.1:{client}"));
    compare(
        provtarget,
        "etcd: hung first member, failover after 250ms (baseline: live member only)",
        &live,
        &hung_first,
        runs,
        "≤ baseline + ~250 ms",
    );
    let mut sequential = hung_first.clone();
    sequential.extend([
        "--set".into(),
        "plugin.provtarget.etcd.failover_after=3s".into(),
    ]);
    compare(
        provtarget,
        "etcd: hung first member, sequential (failover_after = timeout 3s; the old behaviour)",
        &live,
        &sequential,
        runs.min(7),
        "(before)",
    );
}

/// Runs `baseline` and `measured` alternately, `runs` times each; prints one row.
fn compare(
    provtarget: &Path,
    row: &str,
    baseline: &[String],
    measured: &[String],
    runs: usize,
    goal: &str,
) {
    // One unmeasured run of each warms the verdict cache and the page cache.
    call(provtarget, baseline);
    call(provtarget, measured);
    let (mut b, mut m) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(call(provtarget, baseline));
        m.push(call(provtarget, measured));
    }
    let b: Vec<f64> = b.into_iter().map(crate::ms).collect();
    let m: Vec<f64> = m.into_iter().map(crate::ms).collect();
    crate::print_row(row, "ms", &b, &m, goal);
}

/// One `provtarget targets` run; panics unless it printed a broker.
fn call(provtarget: &Path, args: &[String]) -> Duration {
    let started = Instant::now();
    let out = Command::new(provtarget)
        .arg("targets")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run provtarget");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("prov1.example.net:4222"),
        "provtarget targets {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

/// `POST /v3/kv/put` with `body` to etcd on 127.0.0.1:`port`; whether it answered 200.
fn put(port: u16, body: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
