//! Broker check rows (issue 18): `provtarget targets` with
//! `plugin.provtarget.broker_check` on against off, whole process, against real
//! nats-servers on 127.0.0.1 (plain, and TLS with a certificate made by openssl), and
//! the worst case (silent brokers) against off plus one `broker_check_timeout`.
use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use provtarget::config::keys;
use provtarget_testsupport::{find_tool, free_port, wait_for_tcp, ServerProcess, TempDir};

use crate::{empty_config, ms, print_row, run, Bins};

/// Brokers per answer in the healthy rows.
const BROKERS: usize = 3;
/// Silent brokers in the worst-case row, and its timeout.
const SILENT: usize = 5;
const WORST_TIMEOUT: Duration = Duration::from_millis(500);

fn targets_cmd(bins: &Bins, config: &Path, plugins: &Path, brokers: &[String]) -> Command {
    let mut cmd = Command::new(&bins.provtarget);
    cmd.arg("targets")
        .arg("--config")
        .arg(config)
        .arg("--plugin-dir")
        .arg(plugins)
        .arg("--set")
        .arg(format!("{}={}", keys::BROKER_URLS, brokers.join(",")))
        .arg("--set")
        .arg(format!("{}=", keys::JWT_FILE));
    cmd
}

/// A nats-server on 127.0.0.1 (with a TLS block when `tls` names a certificate and
/// key), and its port.
fn nats(
    bin: &Path,
    dir: &TempDir,
    name: &str,
    tls: Option<(&Path, &Path)>,
) -> (ServerProcess, u16) {
    let port = free_port();
    let mut conf = format!("listen: \"127.0.0.1:{port}\"\n");
    if let Some((cert, key)) = tls {
        conf.push_str(&format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n}}\n",
            cert.display(),
            key.display()
        ));
    }
    let file = dir.write(&format!("{name}.conf"), conf);
    let mut cmd = Command::new(bin);
    cmd.arg("-c").arg(file);
    let proc = ServerProcess::spawn("nats-server", cmd, None);
    wait_for_tcp("nats-server", port, Duration::from_secs(30));
    (proc, port)
}

/// A self-signed certificate for 127.0.0.1 made by openssl in `dir`.
fn certificate(openssl: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let status = Command::new(openssl)
        .current_dir(dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("openssl");
    assert!(status.status.success(), "openssl failed");
    (dir.join("cert.pem"), dir.join("key.pem"))
}

/// Whole-process `targets` with the check (`mode`) against off, `runs` times each,
/// alternating.
fn compare(
    runs: usize,
    what: &str,
    goal: &str,
    off: &mut dyn FnMut() -> Duration,
    on: &mut dyn FnMut() -> Duration,
    add_to_baseline: Duration,
) {
    off();
    on();
    let (mut b, mut o) = (vec![], vec![]);
    for _ in 0..runs {
        b.push(ms(off() + add_to_baseline));
        o.push(ms(on()));
    }
    print_row(what, "ms", &b, &o, goal);
}

/// The rows.
pub fn rows(bins: &Bins, runs: usize) {
    let (Some(nats_bin), Some(openssl)) = (find_tool("nats-server"), find_tool("openssl")) else {
        println!("| broker check rows | skipped: nats-server or openssl is not installed | | | |");
        return;
    };
    let dir = TempDir::new("bench-broker");
    let config = empty_config(&dir);
    let plugins = TempDir::new("bench-broker-plugins");
    let (cert, key) = certificate(&openssl, dir.path());
    let (_plain, plain_port) = nats(&nats_bin, &dir, "plain", None);
    let (_tls, tls_port) = nats(&nats_bin, &dir, "tls", Some((&cert, &key)));

    let time = |brokers: &[String], sets: &[String], expect: &str| {
        let mut cmd = targets_cmd(bins, &config, plugins.path(), brokers);
        for s in sets {
            cmd.arg("--set").arg(s);
        }
        let out = run(&mut cmd);
        assert!(
            out.stdout.contains(expect),
            "unexpected output: {}",
            out.stdout
        );
        out.wall
    };
    let mode = |m: &str| vec![format!("{}={m}", keys::BROKER_CHECK)];

    for (label, port) in [("plain", plain_port), ("TLS", tls_port)] {
        let brokers: Vec<String> = (0..BROKERS)
            .map(|_| format!("nats://127.0.0.1:{port}"))
            .collect();
        let passed = format!("nats://127.0.0.1:{port}  ok  server_id=");
        compare(
            runs,
            &format!(
                "`provtarget targets`, {BROKERS} healthy {label} nats-server brokers on loopback, whole process: broker_check require vs off"
            ),
            "+ a few ms",
            &mut || time(&brokers, &mode("off"), "Provisioning using"),
            &mut || time(&brokers, &mode("require"), &passed),
            Duration::ZERO,
        );
    }

    // Worst case: every broker silent (never accepted: the kernel completes the
    // connection, nobody speaks); warn keeps them so the process exits 0.
    let listeners: Vec<TcpListener> = (0..SILENT)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    let silent: Vec<String> = listeners
        .iter()
        .map(|l| format!("nats://127.0.0.1:{}", l.local_addr().unwrap().port()))
        .collect();
    let mut warn = mode("warn");
    warn.push(format!(
        "{}={}ms",
        keys::BROKER_CHECK_TIMEOUT,
        WORST_TIMEOUT.as_millis()
    ));
    compare(
        runs.min(7),
        &format!(
            "worst case: {SILENT} silent brokers, broker_check warn, timeout {} ms, vs off + one timeout",
            WORST_TIMEOUT.as_millis()
        ),
        "≈ 1.0x (one timeout, not one per broker)",
        &mut || time(&silent, &mode("off"), "Provisioning using"),
        &mut || time(&silent, &warn, "no INFO within"),
        WORST_TIMEOUT,
    );
    drop(listeners);
}
