//! The `DNS SRV Provisioning Target` plugin, loaded through the real loader and run by
//! the real `provtarget` binary against a real `dnsmasq` on 127.0.0.1.
mod common;
use common::*;

use std::{
    net::UdpSocket,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use provtarget_testsupport::{free_port, require_tool, wait_for_tcp, ServerProcess};

const PACKAGE: &str = "provtarget-dns-srv";
const NAME: &str = "DNS SRV Provisioning Target";
const SRV: &str = "_choria-provisioner._tcp.example.net";

/// A dnsmasq serving only the given `--srv-host` records, authoritative for
/// example.net (other names there are NXDOMAIN).
struct Dnsmasq {
    _process: ServerProcess,
    port: u16,
    _dir: TempDir,
}

impl Dnsmasq {
    /// `None` when dnsmasq is missing outside CI (the test then returns early).
    fn start(label: &str, records: &[&str]) -> Option<Dnsmasq> {
        Self::start_on(label, free_port(), records)
    }

    fn start_on(label: &str, port: u16, records: &[&str]) -> Option<Dnsmasq> {
        let bin = require_tool("dnsmasq", "dnsmasq")?;
        let dir = TempDir::new(label);
        let mut cmd = Command::new(bin);
        cmd.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--local=/example.net/",
        ])
        .arg(format!("--port={port}"))
        .arg(format!(
            "--pid-file={}",
            dir.path().join("dnsmasq.pid").display()
        ));
        for r in records {
            cmd.arg(format!("--srv-host={r}"));
        }
        let log = dir.path().join("dnsmasq.log");
        let process = ServerProcess::spawn("dnsmasq", cmd, Some(&log));
        // dnsmasq serves TCP on the same port as UDP: accepting means ready.
        wait_for_tcp("dnsmasq", port, Duration::from_secs(10));
        Some(Dnsmasq {
            _process: process,
            port,
            _dir: dir,
        })
    }

    fn server(&self) -> String {
        format!("plugin.provtarget.dns_srv.servers=127.0.0.1:{}", self.port)
    }
}

/// The standard records: two brokers at priority 10 (weights 60 and 20), a backup at 20.
const RECORDS: &[&str] = &[
    "_choria-provisioner._tcp.example.net,backup.example.net,4224,20,0",
    "_choria-provisioner._tcp.example.net,prov1.example.net.,4222,10,60",
    "_choria-provisioner._tcp.example.net,prov2.example.net,4223,10,20",
];

fn servers(run: &Run) -> Vec<String> {
    let v = run.json();
    assert_eq!(v["resolver"], NAME, "{run:#?}");
    v["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn srv_records_come_ordered_by_priority_as_scheme_urls() {
    let Some(dns) = Dnsmasq::start("dns-srv-order", RECORDS) else {
        return;
    };
    let dir = plugin_dir("dns-srv-order-p", &[PACKAGE]);
    let server = dns.server();
    let name = format!("plugin.provtarget.dns_srv.name={SRV}");
    let run = targets_in(&dir, &[&server, &name], &["--json", "--timeout", "10s"]);
    run.ok();
    let got = servers(&run);
    assert_eq!(got.len(), 3, "{got:?}");
    let mut first_two = got[..2].to_vec();
    first_two.sort();
    assert_eq!(
        first_two,
        [
            "nats://prov1.example.net:4222",
            "nats://prov2.example.net:4223"
        ],
        "priority 10 first, trailing dots removed"
    );
    assert_eq!(got[2], "nats://backup.example.net:4224", "priority 20 last");

    // Another scheme.
    let run = targets_in(
        &dir,
        &[&server, &name, "plugin.provtarget.dns_srv.scheme=tls"],
        &["--json", "--timeout", "10s"],
    );
    run.ok();
    assert_eq!(servers(&run)[2], "tls://backup.example.net:4224");
}

#[test]
fn weights_decide_how_often_a_broker_comes_first_within_its_priority() {
    let Some(dns) = Dnsmasq::start(
        "dns-srv-weight",
        &[
            "_choria-provisioner._tcp.example.net,light.example.net,4222,10,20",
            "_choria-provisioner._tcp.example.net,heavy.example.net,4222,10,80",
        ],
    ) else {
        return;
    };
    let dir = plugin_dir("dns-srv-weight-p", &[PACKAGE]);
    let server = dns.server();
    let name = format!("plugin.provtarget.dns_srv.name={SRV}");
    let runs = 40;
    let mut heavy_first = 0;
    for _ in 0..runs {
        let run = targets_in(&dir, &[&server, &name], &["--json", "--timeout", "10s"]);
        run.ok();
        let got = servers(&run);
        assert_eq!(got.len(), 2, "{got:?}");
        if got[0] == "nats://heavy.example.net:4222" {
            heavy_first += 1;
        }
    }
    // 80 : 20 over 40 calls: 32 expected (sd 2.5). Each process draws afresh, so the
    // light broker also comes first now and then (all 40 heavy: p = 0.8^40 ~ 1e-4).
    assert!(heavy_first >= 22, "heavy first {heavy_first} of {runs}");
    assert!(heavy_first < runs, "light never first in {runs} calls");
}

#[test]
fn domain_placeholder_takes_the_domain_override() {
    let Some(dns) = Dnsmasq::start(
        "dns-srv-domain",
        &[
            "_choria-provisioner._tcp.lon1.example.net,prov.lon1.example.net,4222,1,1",
            "_choria-provisioner._tcp.par1.example.net,prov.par1.example.net,4222,1,1",
        ],
    ) else {
        return;
    };
    let dir = plugin_dir("dns-srv-domain-p", &[PACKAGE]);
    let server = dns.server();
    // The default name, _choria-provisioner._tcp.{domain}.
    for dc in ["lon1", "par1"] {
        let domain = format!("plugin.provtarget.dns_srv.domain={dc}.example.net");
        let run = targets_in(&dir, &[&server, &domain], &["--json", "--timeout", "10s"]);
        run.ok();
        assert_eq!(
            servers(&run),
            [format!("nats://prov.{dc}.example.net:4222")]
        );
    }
    // A name with the placeholder elsewhere.
    let run = targets_in(
        &dir,
        &[
            &server,
            "plugin.provtarget.dns_srv.domain=example.net",
            "plugin.provtarget.dns_srv.name=_choria-provisioner._tcp.lon1.{domain}",
        ],
        &["--json", "--timeout", "10s"],
    );
    run.ok();
    assert_eq!(servers(&run), ["nats://prov.lon1.example.net:4222"]);
}

#[test]
fn a_server_that_fails_is_skipped_for_the_next_one() {
    let Some(dns) = Dnsmasq::start("dns-srv-failover", RECORDS) else {
        return;
    };
    let dir = plugin_dir("dns-srv-failover-p", &[PACKAGE]);
    // First a server that never answers, then the real one.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let servers_set = format!(
        "plugin.provtarget.dns_srv.servers=127.0.0.1:{}, 127.0.0.1:{}",
        silent.local_addr().unwrap().port(),
        dns.port
    );
    let run = targets_in(
        &dir,
        &[
            &servers_set,
            &format!("plugin.provtarget.dns_srv.name={SRV}"),
            "plugin.provtarget.dns_srv.timeout=300ms",
        ],
        &["--json", "--timeout", "10s"],
    );
    run.ok();
    assert_eq!(servers(&run).len(), 3);
    assert!(
        !run.stderr.contains("try 1 failed"),
        "the first try succeeds through the second server: {}",
        run.stderr
    );
}

#[test]
fn nxdomain_and_bad_records_are_retried_with_clear_causes() {
    let Some(dns) = Dnsmasq::start(
        "dns-srv-bad",
        &[
            "_bad._tcp.example.net,bad_name.example.net,4222,1,1",
            "_bad._tcp.example.net,good.example.net,0,1,1",
            "_none._tcp.example.net",
        ],
    ) else {
        return;
    };
    let dir = plugin_dir("dns-srv-bad-p", &[PACKAGE]);
    let server = dns.server();
    let port = dns.port;

    let run = targets_in(
        &dir,
        &[
            &server,
            "plugin.provtarget.dns_srv.name=_missing._tcp.example.net",
        ],
        &["--timeout", "1500ms"],
    );
    run.failed(1);
    run.stderr_has(&format!(
        "try 1 failed: SRV lookup of _missing._tcp.example.net failed: 127.0.0.1:{port}: _missing._tcp.example.net does not exist (NXDOMAIN)"
    ));
    assert!(
        run.stderr.contains("try 2 failed"),
        "retried: {}",
        run.stderr
    );

    let run = targets_in(
        &dir,
        &[
            &server,
            "plugin.provtarget.dns_srv.name=_bad._tcp.example.net",
        ],
        &["--timeout", "1s"],
    );
    run.failed(1);
    run.stderr_has(&format!(
        "ignoring an SRV record of _bad._tcp.example.net from 127.0.0.1:{port}: record 1 1 4222 \"bad_name.example.net.\": label \"bad_name\" holds characters other than letters, digits and '-'"
    ));
    run.stderr_has("record 1 1 0 \"good.example.net.\": port 0");
    run.stderr_has("no usable SRV records for _bad._tcp.example.net (2 refused)");

    let run = targets_in(
        &dir,
        &[
            &server,
            "plugin.provtarget.dns_srv.name=_none._tcp.example.net",
        ],
        &["--timeout", "1s"],
    );
    run.failed(1);
    run.stderr_has("target \".\": the service is not offered there");
}

#[test]
fn a_dns_server_that_comes_up_later_is_used() {
    if require_tool("dnsmasq", "dnsmasq").is_none() {
        return;
    }
    let dir = plugin_dir("dns-srv-late-p", &[PACKAGE]);
    let port = free_port();
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(1500));
        Dnsmasq::start_on("dns-srv-late", port, RECORDS)
    });
    let run = targets_in(
        &dir,
        &[
            &format!("plugin.provtarget.dns_srv.servers=127.0.0.1:{port}"),
            &format!("plugin.provtarget.dns_srv.name={SRV}"),
            "plugin.provtarget.dns_srv.timeout=300ms",
        ],
        &["--json", "--timeout", "30s"],
    );
    let dns = late.join().expect("dnsmasq thread").expect("dnsmasq");
    run.ok();
    assert_eq!(servers(&run).len(), 3, "{run:#?}");
    assert!(
        run.stderr.contains(&format!(
            "try 1 failed: SRV lookup of {SRV} failed: 127.0.0.1:{port}: "
        )),
        "the server was down at first: {}",
        run.stderr
    );
    drop(dns);
}

#[test]
fn the_deadline_ends_a_call_to_a_server_that_never_answers_with_the_last_error() {
    let dir = plugin_dir("dns-srv-silent-p", &[PACKAGE]);
    // A UDP socket that receives the queries and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let server = format!("plugin.provtarget.dns_srv.servers=127.0.0.1:{port}");
    let name = format!("plugin.provtarget.dns_srv.name={SRV}");

    // Short queries: several tries fail before the deadline, each logged with its cause.
    let run = targets_in(
        &dir,
        &[&server, &name, "plugin.provtarget.dns_srv.timeout=200ms"],
        &["--timeout", "1500ms"],
    );
    run.deadline_honoured()
        .stderr_has(&format!(
            "try 1 failed: SRV lookup of {SRV} failed: 127.0.0.1:{port}: "
        ))
        .stderr_has(&format!(
            "could not determine provisioning servers using {NAME} provisioning target plugin: context deadline exceeded"
        ));

    // A 30 s query in flight at the deadline: only the plugin's cancellation check can
    // end it; one that ignored cancellation would be abandoned after the 2 s grace.
    let started = Instant::now();
    let run = targets_in(
        &dir,
        &[&server, &name, "plugin.provtarget.dns_srv.timeout=30s"],
        &["--timeout", "500ms"],
    );
    let took = started.elapsed();
    // The query in flight was cancelled.
    run.deadline_honoured();
    // Liveness bound only: far below the 30 s query timeout.
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn bad_configuration_disables_the_plugin_naming_the_key() {
    let dir = plugin_dir("dns-srv-conf-p", &[PACKAGE]);
    let d = path_str(dir.path());
    for (set, says) in [
        (
            "plugin.provtarget.dns_srv.servers=dns.example.net:53",
            "plugin.provtarget.dns_srv.servers = \"dns.example.net:53\" is not valid",
        ),
        (
            "plugin.provtarget.dns_srv.name=_x._tcp.{dc}",
            "plugin.provtarget.dns_srv.name = \"_x._tcp.{dc}\" is not valid",
        ),
        (
            "plugin.provtarget.dns_srv.timeout=0",
            "plugin.provtarget.dns_srv.timeout = \"0\" is not valid",
        ),
        (
            "plugin.provtarget.dns_srv.scheme=nats://",
            "plugin.provtarget.dns_srv.scheme = \"nats://\" is not valid",
        ),
    ] {
        let run = provtarget(&["buildinfo", "--plugin-dir", &d, "--set", set, "--json"]);
        run.ok();
        let v = run.json();
        let disabled = v["disabled"].as_array().expect("disabled");
        assert_eq!(disabled.len(), 1, "{v:#}");
        assert_eq!(disabled[0]["name"], NAME);
        let reason = disabled[0]["reason"].as_str().unwrap();
        assert!(reason.contains(says), "{reason}");
    }
}

#[test]
fn buildinfo_lists_the_plugin_its_keys_and_settings() {
    let dir = plugin_dir("dns-srv-info-p", &[PACKAGE]);
    let run = run_in(
        "buildinfo",
        &dir,
        &[
            "plugin.provtarget.dns_srv.servers=127.0.0.1:8600",
            "plugin.provtarget.dns_srv.name=choria-provisioner.service.consul",
        ],
        &["--json"],
    );
    run.ok();
    let v = run.json();
    assert_eq!(v["resolver"]["name"], NAME, "{v:#}");
    let plugin = v["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == NAME)
        .unwrap_or_else(|| panic!("{NAME} not listed: {v:#}"));
    assert_eq!(plugin["status"], "loaded");
    assert!(plugin["path"]
        .as_str()
        .unwrap()
        .ends_with("libprovtarget_dns_srv.so"));
    let keys: Vec<&str> = plugin["config_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "plugin.provtarget.dns_srv.name",
            "plugin.provtarget.dns_srv.servers",
            "plugin.provtarget.dns_srv.scheme",
            "plugin.provtarget.dns_srv.domain",
            "plugin.provtarget.dns_srv.timeout",
            "plugin.provtarget.dns_srv.failover_after",
        ]
    );
    let settings = &v["settings"];
    assert_eq!(
        settings["plugin.provtarget.dns_srv.servers"],
        "127.0.0.1:8600"
    );
    assert_eq!(
        settings["plugin.provtarget.dns_srv.name"],
        "choria-provisioner.service.consul"
    );
    assert_eq!(settings["plugin.provtarget.dns_srv.scheme"], "nats");
    // What it found, not only what it was told.
    assert_eq!(
        settings["plugin.provtarget.dns_srv.detected.servers"],
        "127.0.0.1:8600 (set by plugin.provtarget.dns_srv.servers)"
    );
    assert_eq!(
        settings["plugin.provtarget.dns_srv.detected.domain"],
        "not used: plugin.provtarget.dns_srv.name holds no {domain}"
    );
}
