//! Hostile inputs through the real binary (issue 10, input half): a configuration or
//! JWT file that is a FIFO or a device, a huge configuration, a byte-order mark, a
//! configuration file others could have written, misspelt `RUST_LOG`, garbage
//! `--log-level`, missing or relative `--plugin-dir`. Each run has a liveness limit
//! (a hang fails the test instead of the suite) and, where memory is the question, an
//! address-space limit (`ulimit -v`), so an unbounded read fails fast instead of
//! eating the machine.
mod common;
use common::*;
use provtarget_testsupport::set_mode;
use serde_json::json;
use std::path::Path;

/// Address space allowed to the binary where a test is about memory (1 GiB: the host
/// needs well under 100 MiB; the unbounded reads this guards against took 2-8 GB).
const MEMORY_LIMIT_KIB: u64 = 1 << 20;

/// The one line of stderr, failing if there are more (or none).
fn one_line(run: &Run) -> &str {
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{run:#?}");
    lines[0]
}

/// Arguments that make the built-in resolver answer from the configuration alone.
fn broker_args(dir: &TempDir) -> (String, String) {
    (
        path_str(&dir.path().join("no-plugins")),
        "plugin.provtarget.broker_urls=prov.example.net:4222".to_string(),
    )
}

/// Whether this process runs as root: the owner of a file it just created.
fn running_as_root(dir: &TempDir) -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = dir.write("whoami", "");
    let uid = std::fs::metadata(&probe).expect("stat").uid();
    std::fs::remove_file(probe).expect("remove");
    uid == 0
}

#[test]
fn a_fifo_configuration_is_refused_at_once_in_one_line() {
    let dir = TempDir::new("fifo-config");
    let fifo = dir.fifo("server.conf");
    let f = path_str(&fifo);
    for cmd in ["targets", "buildinfo"] {
        let run = provtarget_limited(&[cmd, "--config", &f], &[], MEMORY_LIMIT_KIB);
        run.failed(2);
        let line = one_line(&run);
        assert_eq!(
            line,
            format!("provtarget: configuration file {f} is a FIFO (named pipe), not a regular file; check the path given to --config (a regular file of key = value lines)")
        );
    }
}

#[test]
fn a_fifo_jwt_is_named_and_the_broker_urls_still_resolve() {
    let dir = TempDir::new("fifo-jwt");
    let fifo = dir.fifo("provisioning.jwt");
    let (none, urls) = broker_args(&dir);
    let jwt = format!("plugin.provtarget.jwt_file={}", path_str(&fifo));
    let rest = [
        "--config",
        "/dev/null",
        "--plugin-dir",
        &none,
        "--set",
        &jwt,
        "--set",
        &urls,
    ];
    let run = provtarget_limited(&[&["targets"][..], &rest].concat(), &[], MEMORY_LIMIT_KIB);
    run.ok();
    assert_eq!(
        run.stdout,
        "Attempting provisioner resolution using: Choria JWT Resolver\nProvisioning using 1 broker(s):\n   nats://prov.example.net:4222\n"
    );
    let jwt_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("JWT file"))
        .collect();
    assert_eq!(jwt_lines.len(), 1, "{run:#?}");
    assert!(
        jwt_lines[0].contains(&format!(
            "JWT file {} failed: the file is a FIFO (named pipe), not a regular file; point plugin.provtarget.jwt_file at",
            path_str(&fifo)
        )),
        "{run:#?}"
    );
    // buildinfo shows the built-in resolver active, not disabled.
    let run = provtarget_limited(
        &[&["buildinfo", "--json"][..], &rest].concat(),
        &[],
        MEMORY_LIMIT_KIB,
    );
    run.ok();
    let info = run.json();
    assert_eq!(info["disabled"], json!([]), "{info:#}");
    assert_eq!(info["resolver"]["name"], "Choria JWT Resolver", "{info:#}");
    assert_eq!(
        info["settings"]["provisioning.broker_urls"], "prov.example.net:4222",
        "{info:#}"
    );
}

#[test]
fn dev_zero_as_configuration_or_jwt_is_refused_with_bounded_memory() {
    let run = provtarget_limited(&["targets", "--config", "/dev/zero"], &[], MEMORY_LIMIT_KIB);
    run.failed(2);
    assert!(one_line(&run).starts_with(
        "provtarget: configuration file /dev/zero is a character device, not a regular file"
    ));

    let dir = TempDir::new("zero-jwt");
    let (none, urls) = broker_args(&dir);
    let run = provtarget_limited(
        &[
            "targets",
            "--config",
            "/dev/null",
            "--plugin-dir",
            &none,
            "--set",
            "plugin.provtarget.jwt_file=/dev/zero",
            "--set",
            &urls,
        ],
        &[],
        MEMORY_LIMIT_KIB,
    );
    run.ok();
    assert!(
        run.stdout.contains("nats://prov.example.net:4222"),
        "{run:#?}"
    );
    assert!(
        run.stderr.contains(
            "JWT file /dev/zero failed: the file is a character device, not a regular file"
        ),
        "{run:#?}"
    );
}

/// Writes `size` bytes of junk lines to `path`, in 1 MiB writes.
fn write_junk(path: &Path, size: usize) {
    use std::io::Write;
    let mut chunk = String::new();
    let mut i = 0;
    while chunk.len() < 1 << 20 {
        chunk.push_str(&format!("junk line number {i} without an equals sign\n"));
        i += 1;
    }
    let mut file = std::fs::File::create(path).expect("create");
    let mut written = 0;
    while written < size {
        let n = chunk.len().min(size - written);
        file.write_all(&chunk.as_bytes()[..n]).expect("write");
        written += n;
    }
}

#[test]
fn a_huge_configuration_is_refused_and_many_bad_lines_are_summarised() {
    let dir = TempDir::new("junk-config");
    // 100 MB of junk: refused from its size before it is read.
    let huge = dir.path().join("huge.conf");
    write_junk(&huge, 100 << 20);
    let run = provtarget_limited(
        &["targets", "--config", &path_str(&huge)],
        &[],
        MEMORY_LIMIT_KIB,
    );
    std::fs::remove_file(&huge).expect("remove the 100 MB file");
    run.failed(2);
    assert_eq!(
        one_line(&run),
        format!(
            "provtarget: configuration file {} is 104857600 bytes, more than the limit of 1048576 bytes; is it really a key = value configuration? check the path given to --config",
            path_str(&huge)
        )
    );

    // Just under the limit (about 22,000 bad lines): read, and the warnings summed up.
    let big = dir.path().join("big.conf");
    write_junk(&big, (1 << 20) - 100);
    let (none, urls) = broker_args(&dir);
    let run = provtarget_limited(
        &[
            "targets",
            "--config",
            &path_str(&big),
            "--plugin-dir",
            &none,
            "--set",
            &urls,
            "--set",
            "plugin.provtarget.jwt_file=",
        ],
        &[],
        MEMORY_LIMIT_KIB,
    );
    run.ok();
    let ignoring = run
        .stderr
        .lines()
        .filter(|l| l.contains("ignoring"))
        .count();
    assert_eq!(ignoring, 10, "{}", run.stderr);
    let summary: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("more malformed lines ignored"))
        .collect();
    assert_eq!(summary.len(), 1, "{}", run.stderr);
    assert!(run.stderr.lines().count() <= 13, "{}", run.stderr);
}

#[test]
fn a_byte_order_mark_does_not_hide_the_first_key() {
    let dir = TempDir::new("bom");
    let conf = dir.write(
        "server.conf",
        "\u{feff}plugin.provtarget.broker_urls = bom.example.net:4222\nplugin.provtarget.jwt_file =\n",
    );
    let none = path_str(&dir.path().join("no-plugins"));
    let run = provtarget(&[
        "targets",
        "--config",
        &path_str(&conf),
        "--plugin-dir",
        &none,
    ]);
    run.ok();
    assert!(
        run.stdout.contains("nats://bom.example.net:4222"),
        "{run:#?}"
    );
    assert!(
        !run.stderr.contains("unknown configuration key"),
        "{run:#?}"
    );
}

#[test]
fn a_configuration_others_could_write_gets_a_warning() {
    let dir = TempDir::new("foreign-config");
    if !running_as_root(&dir) {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (to chown a file to another user); CI runs as root"
        );
        eprintln!("skipped: needs root to chown a file to another user");
        return;
    }
    let conf = dir.write("server.conf", "plugin.provtarget.jwt_file =\n");
    std::os::unix::fs::chown(&conf, Some(65534), Some(65534)).expect("chown");
    let none = path_str(&dir.path().join("no-plugins"));
    let c = path_str(&conf);
    let run = provtarget(&["buildinfo", "--config", &c, "--plugin-dir", &none]);
    run.ok();
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("owned by uid 65534"))
        .unwrap_or_else(|| panic!("no owner warning:\n{run:#?}"));
    assert!(
        line.contains(&format!("configuration file {c} is owned by uid 65534, but only root may own it; chown root {c}; this matters because it decides where plugins are loaded from")),
        "{line}"
    );

    // Our own file in a directory anyone may write to (no sticky bit).
    let open = TempDir::new("open-dir");
    let conf = open.write("server.conf", "plugin.provtarget.jwt_file =\n");
    set_mode(open.path(), 0o777);
    let run = provtarget(&[
        "buildinfo",
        "--config",
        &path_str(&conf),
        "--plugin-dir",
        &none,
    ]);
    set_mode(open.path(), 0o755);
    run.ok();
    assert!(
        run.stderr.contains(&format!(
            "is in directory {} (mode 0777) that others can write to",
            path_str(open.path())
        )),
        "{run:#?}"
    );
}

#[test]
fn a_misspelt_rust_log_does_not_silence_security_warnings() {
    let dir = TempDir::new("rust-log");
    let conf = dir.write("server.conf", "plugin.provtarget.jwt_file =\n");
    set_mode(&conf, 0o666);
    let none = path_str(&dir.path().join("no-plugins"));
    for rust_log in ["warning", "verbose", "provtarget_loader=debug"] {
        let run = provtarget_env(
            &[
                "buildinfo",
                "--config",
                &path_str(&conf),
                "--plugin-dir",
                &none,
            ],
            &[("RUST_LOG", rust_log)],
        );
        run.ok();
        assert!(
            run.stderr
                .contains("is group- and world-writable (mode 0666)"),
            "RUST_LOG={rust_log}:\n{run:#?}"
        );
        if rust_log != "provtarget_loader=debug" {
            let named: Vec<&str> = run
                .stderr
                .lines()
                .filter(|l| l.contains(&format!("RUST_LOG=\"{rust_log}\"")))
                .collect();
            assert_eq!(named.len(), 1, "{run:#?}");
            assert!(named[0].contains("logging at warn instead"), "{run:#?}");
        }
    }
}

#[test]
fn garbage_log_levels_are_refused_in_one_line() {
    for level in [
        ",",
        "",
        "warning",
        "info,,debug",
        "=warn",
        "provtarget=loud",
    ] {
        let run = provtarget(&["--log-level", level, "buildinfo"]);
        run.failed(2);
        let line = one_line(&run);
        assert!(
            line.starts_with(&format!("provtarget: --log-level {level:?} ")),
            "{line}"
        );
        assert!(
            line.contains("use error, warn, info, debug or trace"),
            "{line}"
        );
    }
    // Good ones still work.
    for level in [
        "debug",
        " WARN ",
        "provtarget=info,warn",
        "provtarget_loader=trace",
    ] {
        provtarget(&["--log-level", level, "buildinfo"]).ok();
    }
}

#[test]
fn a_missing_or_relative_plugin_dir_is_one_warning() {
    let dir = TempDir::new("plugin-dir");
    let missing = path_str(&dir.path().join("missing"));
    // A relative --plugin-dir, typed at a shell, is an error naming the absolute path
    // (issue 21: it loaded nothing with only a warning); in the configuration file it
    // stays one warning.
    let run = provtarget(&["targets", "--plugin-dir", "relative/plugins"]);
    run.failed(2);
    run.stderr_has("provtarget: --plugin-dir relative/plugins is a relative path; plugin directories must be absolute");
    let conf = dir.write(
        "server.conf",
        "plugin.provtarget.directories = relative/plugins\n",
    );
    let conf = path_str(&conf);
    for (given, text) in [
        (
            missing.as_str(),
            format!("plugin directory {missing} does not exist"),
        ),
        (
            "",
            "plugin directory relative/plugins is a relative path".to_string(),
        ),
    ] {
        let (flag, given) = if given.is_empty() {
            ("--config", conf.as_str())
        } else {
            ("--plugin-dir", given)
        };
        let run = provtarget(&[
            "targets",
            flag,
            given,
            "--set",
            "plugin.provtarget.broker_urls=b.example.net:4222",
            "--set",
            "plugin.provtarget.jwt_file=",
        ]);
        run.ok();
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{run:#?}");
        assert!(lines[0].contains(&text), "{run:#?}");
    }
}
