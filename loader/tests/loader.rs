//! The loader's behaviour, file by file, with real libraries in real directories.
//!
//! Every refusal is checked for its stage, the key words of its reason, that the
//! reason names the file, and that it is one line. Files that must be refused before
//! `dlopen` are also checked to be absent from this process's memory map: no code of
//! theirs ran.

use std::{
    ffi::OsStr,
    fs,
    os::unix::fs::{symlink, MetadataExt},
    path::{Path, PathBuf},
    sync::mpsc,
    time::Duration,
};

use provtarget_loader::{
    check_file, load_all, LibraryRecord, LoadReport, LoaderOptions, Refusal, RefusalKind, Stage,
    Verdict,
};
use provtarget_testsupport::{cdylib, legacy_1_0_plugin, panic_abort_plugin, set_mode, TempDir};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------
// helpers

fn options(dirs: &[&Path]) -> LoaderOptions {
    LoaderOptions {
        directories: dirs.iter().map(|d| d.to_path_buf()).collect(),
        pin_file: None,
        insecure_skip_owner_checks: false,
        always_hash: false,
        cache_dir: None,
        signatures: Default::default(),
    }
}

fn load(dir: &TempDir) -> LoadReport {
    load_all(&options(&[dir.path()]))
}

fn record<'a>(report: &'a LoadReport, name: &str) -> &'a LibraryRecord {
    report
        .libraries
        .iter()
        .find(|r| r.path.file_name() == Some(OsStr::new(name)))
        .unwrap_or_else(|| panic!("no record for {name}: {:#?}", report.libraries))
}

#[track_caller]
fn assert_rejected(record: &LibraryRecord, stage: Stage, kind: RefusalKind, words: &[&str]) {
    let Verdict::Rejected(Refusal {
        stage: actual,
        kind: actual_kind,
        message: reason,
    }) = &record.verdict
    else {
        panic!(
            "{} was not rejected: {:?}",
            record.path.display(),
            record.verdict
        );
    };
    assert_eq!(*actual, stage, "wrong stage; reason: {reason}");
    assert_eq!(*actual_kind, kind, "wrong kind; reason: {reason}");
    assert!(
        reason.contains(&*record.path.to_string_lossy()),
        "reason does not name the file: {reason}"
    );
    assert!(!reason.contains('\n'), "reason is not one line: {reason}");
    for word in words {
        assert!(reason.contains(word), "reason lacks {word:?}: {reason}");
    }
}

/// Loads `dir` and asserts that its library `name` was refused (see [`assert_rejected`]).
#[track_caller]
fn load_refusing(
    dir: &TempDir,
    name: &str,
    stage: Stage,
    kind: RefusalKind,
    words: &[&str],
) -> LoadReport {
    let report = load(dir);
    assert_rejected(record(&report, name), stage, kind, words);
    report
}

#[track_caller]
fn assert_loaded(report: &LoadReport, name: &str) {
    let r = record(report, name);
    assert_eq!(r.verdict, Verdict::Loaded, "{}", r.path.display());
    let index = report
        .libraries
        .iter()
        .position(|x| std::ptr::eq(x, r))
        .unwrap();
    assert!(
        report.plugins.iter().any(|p| p.record == index),
        "{name} loaded but not among the plugins"
    );
}

/// Whether any part of `path` is mapped into this process (it is, once `dlopen`ed):
/// the file itself, or the sealed in-memory copy the loader names after it.
fn is_mapped(path: &Path) -> bool {
    is_mapped_from_file(path) || is_mapped_from_memfd(path)
}

/// Whether the file at `path` itself is mapped.
fn is_mapped_from_file(path: &Path) -> bool {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    maps.lines().any(|l| l.ends_with(&*path.to_string_lossy()))
}

/// Whether a memfd named after `path` (as the loader names its sealed copies) is
/// mapped.
fn is_mapped_from_memfd(path: &Path) -> bool {
    let maps = fs::read_to_string("/proc/self/maps").unwrap();
    let wanted = format!("/memfd:{} (deleted)", path.display());
    maps.lines().any(|l| l.ends_with(&wanted))
}

#[track_caller]
fn assert_not_loaded_by_dynamic_linker(path: &Path) {
    assert!(
        !is_mapped(path),
        "{} was handed to dlopen, but should have been refused before",
        path.display()
    );
}

fn sha256_hex(path: &Path) -> String {
    Sha256::digest(fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid()).ok() == Some(0)
}

/// Runs `f` on another thread and fails (instead of hanging the suite) if it never
/// returns: for the cases that must not block.
fn must_not_block<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the loader blocked")
}

const DC_HINT: &str = "provtarget-dc-hint";
const TESTKIT: &str = "provtarget-testkit";

// ---------------------------------------------------------------------------------
// loading

#[test]
fn a_valid_plugin_loads_with_its_facts_recorded() {
    let dir = TempDir::new("loader-valid");
    let path = dir.copy_in(&cdylib(DC_HINT), "libdc_hint.so");
    let report = load(&dir);

    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(report.libraries.len(), 1);
    assert_eq!(report.plugins.len(), 1);
    assert_loaded(&report, "libdc_hint.so");
    assert!(
        is_mapped(&path),
        "the loaded file is the one that was checked"
    );

    let r = &report.libraries[0];
    let file = r.file.as_ref().expect("file facts");
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(file.size, meta.len());
    assert_eq!(file.mtime, meta.modified().unwrap());
    // Without pinning the hash is not a check, so it is not computed unless asked.
    assert_eq!(file.sha256, None);
    assert_eq!((file.uid, file.gid), (meta.uid(), meta.gid()));
    assert_eq!(file.mode, 0o644);

    let facts = r.plugin.as_ref().expect("plugin facts");
    assert_eq!(facts.info.name, "Acme DC hints Provisioning Target");
    assert_eq!(facts.interface_version, provtarget_abi::INTERFACE_VERSION);
    assert!(semver::Version::parse(&facts.info.version).is_ok());
    assert!(!facts.info.rustc_version.is_empty() && !facts.info.target.is_empty());

    let plugin = &report.plugins[0];
    assert_eq!(plugin.record, 0);
    assert_eq!(plugin.info, facts.info);
    assert_eq!(plugin.resolver.name(), facts.info.name);
}

#[test]
fn always_hash_reports_the_sha256_of_the_bytes_that_were_loaded() {
    let dir = TempDir::new("loader-hash");
    let path = dir.copy_in(&cdylib(DC_HINT), "libdc_hint.so");
    let mut opts = options(&[dir.path()]);
    opts.always_hash = true;
    let report = load_all(&opts);
    assert_loaded(&report, "libdc_hint.so");
    let hash = report.libraries[0].file.as_ref().unwrap().sha256.clone();
    let hash = hash.expect("always_hash computes the hash");
    assert_eq!(hash, sha256_hex(&path));
    assert_eq!(hash.len(), 64);
    // And it agrees with the `sha256sum` tool, when the machine has it.
    if let Ok(out) = std::process::Command::new("sha256sum").arg(&path).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with(&hash), "sha256sum says {text}");
    }
}

#[test]
fn a_plugin_built_against_interface_1_0_loads() {
    let dir = TempDir::new("loader-legacy");
    dir.copy_in(&legacy_1_0_plugin(), "liblegacy.so");
    let report = load(&dir);
    assert_loaded(&report, "liblegacy.so");
    let facts = report.libraries[0].plugin.as_ref().unwrap();
    assert_eq!(facts.interface_version, "1.0.0");
    assert!(facts.config_keys.is_empty());
}

#[test]
fn distinct_plugins_loaded_one_after_another_are_each_themselves() {
    // Libraries are loaded through /proc/self/fd/N; if a descriptor were closed and its
    // number reused, glibc would hand back the earlier library for the later file.
    let first = TempDir::new("loader-seq-a");
    first.copy_in(&cdylib(TESTKIT), "a.so");
    first.copy_in(&cdylib("provtarget-test-wrongtype"), "b.so");
    let report = load(&first);
    assert_eq!(report.plugins[0].info.name, "Test Kit");

    let second = TempDir::new("loader-seq-b");
    second.copy_in(&cdylib(DC_HINT), "a.so");
    let report = load(&second);
    assert_eq!(
        report.plugins[0].info.name,
        "Acme DC hints Provisioning Target"
    );
}

#[test]
fn the_same_directory_can_be_loaded_twice() {
    let dir = TempDir::new("loader-twice");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    for _ in 0..2 {
        let report = load(&dir);
        assert_loaded(&report, "libtestkit.so");
        assert_eq!(report.plugins[0].resolver.name(), "Test Kit");
    }
}

/// Runs `body` in a child process (this test binary, running only `test`), so that a
/// crash there (e.g. SIGBUS) fails the test instead of killing the whole suite.
fn in_child_process(test: &str, body: impl FnOnce()) {
    const CHILD: &str = "PROVTARGET_LOADER_TEST_CHILD";
    if std::env::var_os(CHILD).as_deref() == Some(OsStr::new(test)) {
        body();
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, test)
        .output()
        .expect("cannot run the test binary");
    assert!(
        out.status.success(),
        "{test} failed in its child process ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A host for calling a plugin directly: never cancelled, logs dropped.
struct QuietHost;

impl provtarget_abi::host::HostServices for QuietHost {
    fn is_cancelled(&self) -> bool {
        false
    }
    fn sleep(&self, _: Duration) -> bool {
        false
    }
    fn log(&self, _: provtarget_abi::LogLevel, _: &str) {}
}

#[test]
fn what_runs_is_a_sealed_copy_of_the_checked_bytes_not_the_file() {
    // Without the sealed copy, the dynamic linker maps the file itself: truncating it
    // (as an in-place `cp` does) makes the next call into the plugin die with SIGBUS,
    // and rewriting it changes the code that runs.
    in_child_process(
        "what_runs_is_a_sealed_copy_of_the_checked_bytes_not_the_file",
        || {
            let dir = TempDir::new("loader-sealed");
            let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit-sealed.so");
            let mut report = load(&dir);
            assert_loaded(&report, "libtestkit-sealed.so");
            assert!(
                is_mapped_from_memfd(&path),
                "no memfd named after {} in /proc/self/maps",
                path.display()
            );
            assert!(
                !is_mapped_from_file(&path),
                "the file itself is mapped, not a sealed copy"
            );

            let resolver = &mut report.plugins[0].resolver;
            let config = [
                ("testkit.targets".to_string(), "a.example:4222".to_string()),
                ("testkit.mode".to_string(), "ok".to_string()),
            ];
            resolver.configure(&QuietHost, &config).unwrap();

            // Truncate the file in place, then call into every function again.
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)
                .unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), 0);
            assert_eq!(resolver.name(), "Test Kit");
            assert_eq!(resolver.targets(&QuietHost).unwrap(), ["a.example:4222"]);

            // Overwrite it in place with another plugin (`cp` onto an existing file).
            fs::write(&path, fs::read(cdylib(DC_HINT)).unwrap()).unwrap();
            assert_eq!(resolver.name(), "Test Kit");
            assert_eq!(resolver.targets(&QuietHost).unwrap(), ["a.example:4222"]);
            resolver.configure(&QuietHost, &config).unwrap();
        },
    );
}

/// Builds `lib{name}.so` from the C `source` in `build` with `cc -shared -fPIC` and
/// `args` (after the source, so `-l` works), copies it into `dir` and returns its path there; `None`
/// when there is no C compiler (a failure when `CI` is set).
fn c_library(
    dir: &TempDir,
    build: &TempDir,
    name: &str,
    source: &str,
    args: &[&str],
) -> Option<PathBuf> {
    let source = build.write(&format!("{name}.c"), source);
    let file = format!("lib{name}.so");
    let output = build.path().join(&file);
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&output)
        .arg(&source)
        .args(args)
        .status();
    match status {
        Ok(s) if s.success() => Some(dir.copy_in(&output, &file)),
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot build a test library with cc ({other:?}) and CI is set"
            );
            eprintln!("SKIPPED: cannot build a test library with cc: {other:?}");
            None
        }
    }
}

/// C code defining the provtarget root-module symbol (pointing at zeros, not a real
/// header), so the ELF pre-check lets the library reach `dlopen`.
fn root_symbol_c() -> String {
    format!(
        "static const unsigned long long zeros[64];\n\
         const unsigned long long *const root __asm__(\"{}\") = zeros;\n",
        provtarget_abi::ROOT_SYMBOL
    )
}

/// Builds a shared library with the C compiler, linked with `-z lazy` (so without
/// BIND_NOW), that exports the provtarget root-module symbol and calls, through its
/// PLT, the functions `missing`, which nothing provides. (Rust code cannot show this:
/// rustc calls external functions through the GOT, which the dynamic linker binds at
/// load time even when lazy.) `None` when there is no C compiler.
fn unbound_library(dir: &TempDir, name: &str, missing: &[&str]) -> Option<PathBuf> {
    let build = TempDir::new("loader-unbound-build");
    let mut source = root_symbol_c();
    for (i, function) in missing.iter().enumerate() {
        source += &format!(
            "extern void {function}(void);\nvoid call_missing_{i}(void) {{ {function}(); }}\n"
        );
    }
    c_library(dir, &build, name, &source, &["-Wl,-z,lazy"])
}

#[test]
fn a_library_with_an_unresolved_function_is_refused_at_load() {
    // abi_stable alone dlopens with RTLD_LAZY: such a library would load, and the host
    // would die ("symbol lookup error", exit 127) on its first call of that function.
    let dir = TempDir::new("loader-unbound");
    let missing = "provtarget_test_symbol_that_nothing_provides";
    let Some(_path) = unbound_library(&dir, "unbound", &[missing]) else {
        return;
    };
    let report = load_refusing(
        &dir,
        "libunbound.so",
        Stage::Load,
        RefusalKind::UnresolvedSymbol,
        &[
            "not a loadable library",
            "undefined symbol: provtarget_test_symbol_that_nothing_provides",
            "rebuild it",
        ],
    );
    let reason = report.libraries[0].verdict.reason().unwrap();
    assert!(!reason.contains("/proc/self/fd"), "{reason}");
}

#[test]
fn unresolved_symbols_are_named_from_the_symbol_table_not_from_dlerror() {
    // Two functions nothing provides, and one the C library does: the reason names
    // the first missing one in the library's symbol table and counts the rest, which
    // dlerror (one symbol, in its own words) cannot tell.
    let dir = TempDir::new("loader-unbound-two");
    let missing = [
        "provtarget_test_first_missing",
        "provtarget_test_second_missing",
    ];
    let Some(_path) = unbound_library(&dir, "unboundtwo", &[missing[0], "getpid", missing[1]])
    else {
        return;
    };
    let report = load(&dir);
    let record = record(&report, "libunboundtwo.so");
    assert_rejected(
        record,
        Stage::Load,
        RefusalKind::UnresolvedSymbol,
        &[
            "not a loadable library: undefined symbol: provtarget_test_",
            "(and 1 more)",
        ],
    );
    let reason = record.verdict.reason().unwrap();
    assert!(!reason.contains("getpid"), "{reason}");
}

#[test]
fn a_library_whose_needed_library_is_not_installed_is_refused_naming_it() {
    // libneedsgone.so is linked against libprovtarget_gone.so, which exists only in a
    // build directory the dynamic linker never searches.
    let dir = TempDir::new("loader-needs-gone");
    let build = TempDir::new("loader-needs-gone-build");
    let gone = TempDir::new("loader-gone");
    if c_library(
        &gone,
        &build,
        "provtarget_gone",
        "int provtarget_gone(void) { return 1; }\n",
        &[],
    )
    .is_none()
    {
        return;
    }
    let source = root_symbol_c()
        + "extern int provtarget_gone(void);\nint f(void) { return provtarget_gone(); }\n";
    let link_dir = format!("-L{}", build.path().display());
    let args = [&link_dir, "-Wl,--no-as-needed", "-lprovtarget_gone"];
    if c_library(&dir, &build, "needsgone", &source, &args).is_none() {
        return;
    }
    load_refusing(
        &dir,
        "libneedsgone.so",
        Stage::Load,
        RefusalKind::DlopenFailed,
        &[
            "not a loadable library: it needs the library libprovtarget_gone.so, installed in \
             none of the directories the dynamic linker searches",
            "install it",
        ],
    );
}

// ---------------------------------------------------------------------------------
// discovery

#[test]
fn a_missing_directory_gives_an_empty_report_and_a_one_line_warning() {
    let report = load_all(&options(&[Path::new("/nonexistent/provtarget/plugins")]));
    assert!(report.libraries.is_empty());
    assert!(report.plugins.is_empty());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert!(
        w.contains("plugin directory /nonexistent/provtarget/plugins does not exist")
            && !w.contains('\n'),
        "{w}"
    );
}

#[test]
fn dotfiles_and_other_suffixes_are_skipped_saying_why() {
    let dir = TempDir::new("loader-skip");
    dir.copy_in(&cdylib(TESTKIT), ".hidden.so");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so.1");
    dir.write("README.md", "docs");
    let report = load(&dir);
    assert!(report.plugins.is_empty());
    assert_eq!(report.libraries.len(), 3);
    for r in &report.libraries {
        assert_eq!(r.verdict.status(), "skipped", "{}", r.path.display());
        assert!(r.file.is_none() && r.plugin.is_none());
    }
    let reason = |n| record(&report, n).verdict.reason().unwrap().to_string();
    assert!(reason(".hidden.so").contains("hidden"));
    assert!(reason("libtestkit.so.1").contains("*.so"));
    assert!(reason("README.md").contains("*.so"));
    assert_not_loaded_by_dynamic_linker(&dir.path().join(".hidden.so"));
}

#[test]
fn files_are_reported_in_directory_order_then_file_name_order() {
    let one = TempDir::new("loader-order-1");
    let two = TempDir::new("loader-order-2");
    for name in ["c.so", "a.so", "b.txt"] {
        one.write(name, "x");
    }
    two.write("0.so", "x");
    let report = load_all(&options(&[one.path(), two.path()]));
    let names: Vec<_> = report
        .libraries
        .iter()
        .map(|r| r.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.so", "b.txt", "c.so", "0.so"]);
    assert_eq!(report.libraries[0].path, one.path().join("a.so"));
}

#[test]
fn a_directory_configured_twice_is_scanned_once() {
    let dir = TempDir::new("loader-dir-twice");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    dir.write("empty.so", "");
    let other = TempDir::new("loader-dir-twice-other");
    other.write("other.so", "");
    let same_again = dir.path().join(".");
    let report = load_all(&options(&[
        dir.path(),
        other.path(),
        dir.path(),
        &same_again,
    ]));
    let paths: Vec<_> = report.libraries.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            dir.path().join("empty.so"),
            dir.path().join("libtestkit.so"),
            other.path().join("other.so"),
        ]
    );
    assert_loaded(&report, "libtestkit.so");
    assert_eq!(report.plugins.len(), 1);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn a_directory_path_that_is_a_file_or_a_symlink_is_a_warning() {
    let dir = TempDir::new("loader-dirwarn");
    let file = dir.write("plugins", "not a dir");
    let report = load_all(&options(&[&file]));
    assert!(report.libraries.is_empty());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("is not a directory"));

    let real = TempDir::new("loader-dirwarn-real");
    real.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let link = dir.path().join("linked");
    symlink(real.path(), &link).unwrap();
    let report = load_all(&options(&[&link]));
    assert!(report.libraries.is_empty() && report.plugins.is_empty());
    assert!(
        report.warnings[0].contains("is a symlink"),
        "{:?}",
        report.warnings
    );
}

/// `path` followed by `suffix` as raw text (`Path::join` would normalise it away).
fn spelled(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[test]
fn no_spelling_of_a_symlinked_directory_loads_from_it() {
    let real = TempDir::new("loader-spell-real");
    real.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let base = TempDir::new("loader-spell");
    fs::create_dir(base.path().join("sub")).unwrap();
    let link = base.path().join("linked");
    symlink(real.path(), &link).unwrap();
    let via_dot_dot = base.path().join("sub").join("..").join("linked");

    let spellings = [
        link.clone(),
        spelled(&link, "/"),
        spelled(&link, "/."),
        spelled(&link, "/./"),
        spelled(&link, "//"),
        spelled(&link, "/.//./"),
        via_dot_dot.clone(),
        spelled(&via_dot_dot, "/."),
    ];
    for dir in &spellings {
        let report = load_all(&options(&[dir]));
        assert!(
            report.libraries.is_empty() && report.plugins.is_empty(),
            "{} loaded from a symlinked directory: {:?}",
            dir.display(),
            report.libraries
        );
        assert_eq!(
            report.warnings.len(),
            1,
            "{}: {:?}",
            dir.display(),
            report.warnings
        );
        let w = &report.warnings[0];
        assert!(
            w.contains("is a symlink; configure the directory it points to instead"),
            "{}: {w}",
            dir.display()
        );
        assert!(!w.contains('\n'));

        // One file in it, by the same spelling: refused as well.
        let (r, plugin) = check_file(&spelled(dir, "/libtestkit.so"), &LoaderOptions::default());
        assert!(plugin.is_none(), "{}", dir.display());
        assert_eq!(
            r.verdict.refusal().map(|r| (r.stage, r.kind)),
            Some((Stage::Trust, RefusalKind::Symlink)),
            "{}: {:?}",
            dir.display(),
            r.verdict
        );
    }

    // The same spellings of the real directory load from it: the refusal is about the
    // symlink, not the spelling.
    for suffix in ["", "/", "/.", "//", "/./"] {
        let dir = spelled(real.path(), suffix);
        let report = load_all(&options(&[&dir]));
        assert!(
            report.warnings.is_empty(),
            "{}: {:?}",
            dir.display(),
            report.warnings
        );
        assert_eq!(report.plugins.len(), 1, "{}", dir.display());
        // Reported under the normalised directory.
        assert_eq!(report.libraries[0].path, real.path().join("libtestkit.so"));
    }
}

#[test]
fn a_relative_plugin_directory_is_refused_with_a_warning() {
    // Relative to the working directory (the package folder, under `cargo test`): a
    // daemon's working directory is arbitrary, so such a path is refused, whatever it
    // names (here: a directory with a real plugin).
    let real = TempDir::new("loader-relative");
    real.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let cwd = std::env::current_dir().unwrap();
    let relative = real
        .path()
        .strip_prefix(cwd.parent().unwrap())
        .map(|p| Path::new("..").join(p))
        .expect("the target directory is beside the package folder");
    assert!(relative.is_relative() && relative.is_dir());
    for dir in [
        relative.clone(),
        Path::new(".").join(&relative),
        PathBuf::from("plugins"),
    ] {
        let report = load_all(&options(&[&dir]));
        assert!(report.libraries.is_empty() && report.plugins.is_empty());
        assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
        let w = &report.warnings[0];
        assert!(
            w.contains("is a relative path") && w.contains("configure an absolute path"),
            "{w}"
        );
    }
}

#[test]
fn a_plugin_directory_ending_in_dot_dot_is_refused_with_a_warning() {
    let real = TempDir::new("loader-dotdot");
    fs::create_dir(real.path().join("sub")).unwrap();
    real.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let report = load_all(&options(&[&real.path().join("sub").join("..")]));
    assert!(report.libraries.is_empty() && report.plugins.is_empty());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(
        report.warnings[0].contains("ends in `..`"),
        "{:?}",
        report.warnings
    );
}

// ---------------------------------------------------------------------------------
// format: refused before dlopen

#[test]
fn a_file_too_large_for_a_plugin_is_refused_unread() {
    let dir = TempDir::new("loader-huge");
    let path = dir.write("huge.so", "");
    // Sparse: 256 MiB + 1 byte of nothing, no disk or memory used.
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len((256 << 20) + 1)
        .unwrap();
    load_refusing(
        &dir,
        "huge.so",
        Stage::Format,
        RefusalKind::TooLarge,
        &[
            "larger than any plugin library",
            "strip its debug information",
        ],
    );
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn an_empty_file_is_refused_before_dlopen() {
    let dir = TempDir::new("loader-empty");
    let path = dir.write("empty.so", "");
    let mut opts = options(&[dir.path()]);
    opts.always_hash = true;
    let report = load_all(&opts);
    assert_rejected(
        record(&report, "empty.so"),
        Stage::Format,
        RefusalKind::NotElf,
        &["is empty"],
    );
    let facts = report.libraries[0].file.as_ref().unwrap();
    assert_eq!(facts.size, 0);
    assert_eq!(
        facts.sha256.as_deref(),
        Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn a_text_file_is_refused_before_dlopen() {
    let dir = TempDir::new("loader-text");
    let path = dir.write("notes.so", "#!/bin/sh\necho this is not a library\n");
    load_refusing(
        &dir,
        "notes.so",
        Stage::Format,
        RefusalKind::NotElf,
        &["not an ELF file", "remove it"],
    );
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn truncated_copies_of_a_real_plugin_are_refused_before_dlopen() {
    // dlopen of a truncated ELF dies with SIGBUS (ARCHITECTURE.md §3): this test reaching
    // its end is part of what it checks.
    let full = fs::read(cdylib(TESTKIT)).unwrap();
    let len = full.len();
    let dir = TempDir::new("loader-truncated");
    let cuts = [16, 64, 4096, len / 4, len / 2, len - 4096, len - 1];
    for cut in cuts {
        dir.write(&format!("cut-{cut:09}.so"), &full[..cut]);
    }
    let report = load(&dir);
    assert!(report.plugins.is_empty());
    for cut in cuts {
        let name = format!("cut-{cut:09}.so");
        assert_rejected(
            record(&report, &name),
            Stage::Format,
            RefusalKind::Truncated,
            &["truncated", "reinstall"],
        );
        assert_not_loaded_by_dynamic_linker(&dir.path().join(&name));
    }
}

#[test]
fn an_executable_copied_as_a_library_is_refused_before_dlopen() {
    let dir = TempDir::new("loader-exe");
    let path = dir.copy_in(Path::new("/bin/true"), "true.so");
    set_mode(&path, 0o755);
    let report = load(&dir);
    let r = record(&report, "true.so");
    // A PIE executable is ELF type DYN, so it gets as far as the symbol lookup; a
    // non-PIE one is refused by type.
    match &r.verdict {
        Verdict::Rejected(Refusal {
            stage: Stage::RootModule,
            ..
        }) => assert_rejected(
            r,
            Stage::RootModule,
            RefusalKind::NoRootSymbol,
            &["not a provtarget plugin"],
        ),
        _ => assert_rejected(
            r,
            Stage::Format,
            RefusalKind::NotASharedLibrary,
            &["executable"],
        ),
    }
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn a_library_without_the_root_module_is_refused_before_dlopen() {
    let dir = TempDir::new("loader-noroot");
    let path = dir.copy_in(&cdylib("provtarget-test-noroot"), "libnoroot.so");
    let report = load_refusing(
        &dir,
        "libnoroot.so",
        Stage::RootModule,
        RefusalKind::NoRootSymbol,
        &["not a provtarget plugin", "export_plugin!"],
    );
    assert!(report.libraries[0].plugin.is_none());
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn a_plugin_built_with_panic_abort_is_refused_before_any_of_its_code_runs() {
    // The plugin's constructor sets this variable, were it ever run (see
    // tests/plugins/panic-abort).
    const CONSTRUCTED: &str = "PROVTARGET_TEST_PANIC_ABORT_CONSTRUCTED";
    let built = panic_abort_plugin();
    // It really is a panic = "abort" build that exports the root module: only the
    // canary tells it apart from a good plugin.
    let bytes = fs::read(&built).unwrap();
    for symbol in [
        provtarget_abi::PANIC_ABORT_SYMBOL,
        provtarget_abi::ROOT_SYMBOL,
    ] {
        assert!(
            bytes.windows(symbol.len()).any(|w| w == symbol.as_bytes()),
            "{} lacks {symbol}",
            built.display()
        );
    }

    let dir = TempDir::new("loader-panic-abort");
    let path = dir.copy_in(&built, "libabort.so");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let report = load(&dir);
    let r = record(&report, "libabort.so");
    assert_rejected(
        r,
        Stage::Format,
        RefusalKind::PanicAbortBuild,
        &[
            "built with panic = \"abort\"",
            "its first panic would end the host",
            "panic = \"unwind\" (the default)",
        ],
    );
    assert!(r.plugin.is_none());
    assert_not_loaded_by_dynamic_linker(&path);
    assert_eq!(std::env::var_os(CONSTRUCTED), None, "its constructor ran");
    // The other plugin in the directory is unaffected.
    assert_loaded(&report, "libtestkit.so");

    let (r, plugin) = check_file(&path, &LoaderOptions::default());
    assert!(plugin.is_none());
    assert_eq!(
        r.verdict.refusal().map(|r| r.kind),
        Some(RefusalKind::PanicAbortBuild)
    );
    assert_not_loaded_by_dynamic_linker(&path);
    assert_eq!(std::env::var_os(CONSTRUCTED), None, "its constructor ran");
}

// ---------------------------------------------------------------------------------
// verification after dlopen

#[test]
fn a_plugin_built_against_an_incompatible_contract_is_refused() {
    let dir = TempDir::new("loader-future");
    dir.copy_in(&cdylib("provtarget-test-future"), "libfuture.so");
    load_refusing(
        &dir,
        "libfuture.so",
        Stage::Interface,
        RefusalKind::InterfaceMismatch,
        &["2.0.0", "rebuild it against provtarget-abi 1.x"],
    );
}

#[test]
fn a_plugin_declaring_1_1_with_the_1_0_layout_is_refused_at_the_interface_stage() {
    let dir = TempDir::new("loader-badlayout");
    dir.copy_in(&cdylib("provtarget-test-badlayout"), "libbadlayout.so");
    let report = load_refusing(
        &dir,
        "libbadlayout.so",
        Stage::Interface,
        RefusalKind::LayoutMismatch,
        &["layout mismatch for interface 1.1.0", "too many fields"],
    );
    assert!(report.plugins.is_empty());
}

#[test]
fn a_plugin_of_the_wrong_type_is_refused() {
    let dir = TempDir::new("loader-wrongtype");
    dir.copy_in(&cdylib("provtarget-test-wrongtype"), "libagent.so");
    let report = load(&dir);
    let r = record(&report, "libagent.so");
    assert_rejected(
        r,
        Stage::PluginType,
        RefusalKind::WrongType,
        &["plugin Acme Agent is not a valid ProvisionTargetResolver"],
    );
    // What it said about itself is still on record.
    assert_eq!(r.plugin.as_ref().unwrap().info.name, "Acme Agent");
}

#[test]
fn a_panicking_constructor_is_refused_and_contained() {
    let dir = TempDir::new("loader-badctor");
    dir.copy_in(&cdylib("provtarget-test-badctor"), "libbad.so");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let report = load_refusing(
        &dir,
        "libbad.so",
        Stage::Constructor,
        RefusalKind::ConstructorFailed,
        &["Exploding Constructor", "constructor exploded on purpose"],
    );
    // and the host carries on with the next file.
    assert_loaded(&report, "libtestkit.so");
}

#[test]
fn a_duplicate_plugin_name_refuses_the_later_file_naming_the_earlier() {
    let dir = TempDir::new("loader-dup");
    let first = dir.copy_in(&cdylib(TESTKIT), "a-testkit.so");
    dir.copy_in(&cdylib(TESTKIT), "b-testkit.so");
    let report = load(&dir);
    assert_loaded(&report, "a-testkit.so");
    assert_rejected(
        record(&report, "b-testkit.so"),
        Stage::Duplicate,
        RefusalKind::Duplicate,
        &["Test Kit", "is also in", &first.to_string_lossy()],
    );
    assert_eq!(report.plugins.len(), 1);
}

// ---------------------------------------------------------------------------------
// trust

#[test]
fn group_or_world_writable_copies_are_refused_naming_the_fix() {
    let dir = TempDir::new("loader-writable");
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    for (mode, words) in [
        (
            0o666,
            &["group- and world-writable", "0666", "chmod go-w"][..],
        ),
        (0o646, &["is world-writable (mode 0646)", "chmod o-w"]),
        (0o664, &["group-writable", "chmod g-w"]),
    ] {
        set_mode(&path, mode);
        let report = load(&dir);
        let r = record(&report, "libtestkit.so");
        assert_rejected(r, Stage::Trust, RefusalKind::WritableByOthers, words);
        // The report still shows owner and mode.
        assert_eq!(r.file.as_ref().unwrap().mode, mode);
        assert_not_loaded_by_dynamic_linker(&path);
    }
}

#[test]
fn a_group_writable_directory_refuses_every_library_in_it() {
    let dir = TempDir::new("loader-gwdir");
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    dir.write("README", "x");
    set_mode(dir.path(), 0o775);
    let report = load(&dir);
    let shown_dir = dir.path().to_string_lossy().into_owned();
    assert_rejected(
        record(&report, "libtestkit.so"),
        Stage::Trust,
        RefusalKind::WritableByOthers,
        &[
            "plugin directory",
            &shown_dir,
            "group-writable",
            "chmod g-w",
        ],
    );
    assert_eq!(record(&report, "README").verdict.status(), "skipped");
    assert!(report.warnings.iter().any(|w| w.contains(&shown_dir)));
    assert_not_loaded_by_dynamic_linker(&path);
}

#[test]
fn a_symlink_to_a_valid_plugin_is_refused() {
    let store = TempDir::new("loader-link-store");
    let target = store.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let dir = TempDir::new("loader-link");
    symlink(&target, dir.path().join("libtestkit.so")).unwrap();
    let report = load_refusing(
        &dir,
        "libtestkit.so",
        Stage::Trust,
        RefusalKind::Symlink,
        &["is a symlink", "replace the link"],
    );
    assert!(report.plugins.is_empty());
}

/// Loading `dir` does not block and refuses its `x.so` as not a regular file, saying
/// `what` it is.
#[track_caller]
fn assert_x_so_not_regular_without_blocking(dir: &TempDir, what: &str) {
    let path = dir.path().to_path_buf();
    let report = must_not_block(move || load_all(&options(&[&path])));
    assert_rejected(
        record(&report, "x.so"),
        Stage::Trust,
        RefusalKind::NotRegularFile,
        &[what],
    );
}

#[test]
fn a_fifo_named_like_a_library_is_refused_without_blocking() {
    let dir = TempDir::new("loader-fifo");
    dir.fifo("x.so");
    assert_x_so_not_regular_without_blocking(&dir, "FIFO");
}

#[test]
fn a_socket_named_like_a_library_is_refused() {
    let dir = TempDir::new("loader-sock");
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("x.so")).unwrap();
    assert_x_so_not_regular_without_blocking(&dir, "socket");
}

#[test]
fn a_directory_named_like_a_library_is_refused() {
    let dir = TempDir::new("loader-dirso");
    fs::create_dir(dir.path().join("x.so")).unwrap();
    load_refusing(
        &dir,
        "x.so",
        Stage::Trust,
        RefusalKind::NotRegularFile,
        &["is a directory"],
    );
}

#[test]
fn files_and_directories_owned_by_another_user_are_refused() {
    if !is_root() {
        // CI runs as root: there, a missing privilege is a failure, never a pass.
        assert!(
            std::env::var_os("CI").is_none(),
            "this test needs root (to chown files to another uid) and CI is set"
        );
        eprintln!("SKIPPED: needs root to chown files to another uid; fails instead under CI");
        return;
    }
    let dir = TempDir::new("loader-owner");
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
    let report = load(&dir);
    let r = record(&report, "libtestkit.so");
    assert_rejected(
        r,
        Stage::Trust,
        RefusalKind::BadOwner,
        &["owned by uid 4242", "chown root"],
    );
    let facts = r.file.as_ref().unwrap();
    assert_eq!((facts.uid, facts.gid), (4242, 4242));

    let other = TempDir::new("loader-owner-dir");
    other.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    std::os::unix::fs::chown(other.path(), Some(4242), None).unwrap();
    load_refusing(
        &other,
        "libtestkit.so",
        Stage::Trust,
        RefusalKind::BadOwner,
        &["plugin directory", "owned by uid 4242"],
    );
}

#[test]
fn the_developer_override_skips_owner_and_mode_rules_only_and_says_so() {
    let dir = TempDir::new("loader-override");
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    set_mode(&path, 0o666);
    set_mode(dir.path(), 0o777);
    let store = TempDir::new("loader-override-store");
    let target = store.copy_in(&cdylib(DC_HINT), "libdc.so");
    symlink(&target, dir.path().join("libdc.so")).unwrap();

    let strict = load(&dir);
    assert!(strict.plugins.is_empty());

    let mut opts = options(&[dir.path()]);
    opts.insecure_skip_owner_checks = true;
    let report = load_all(&opts);
    assert_loaded(&report, "libtestkit.so");
    assert_rejected(
        record(&report, "libdc.so"),
        Stage::Trust,
        RefusalKind::Symlink,
        &["is a symlink"],
    );
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    assert!(report.warnings[0].contains("insecure_skip_owner_checks"));
    set_mode(dir.path(), 0o755);
}

// ---------------------------------------------------------------------------------
// pinning

fn pinned(dir: &TempDir, pins: &str) -> LoadReport {
    let pin_store = TempDir::new("loader-pins-file");
    let pin_file = pin_store.write("pins.sha256", pins);
    let mut opts = options(&[dir.path()]);
    opts.pin_file = Some(pin_file);
    load_all(&opts)
}

/// TESTKIT copied as `libtestkit.so` into a fresh directory and loaded with the pin
/// file `pins(sha256, path)`; the report, and the copy's path and SHA-256 (the
/// directory lives as long as the returned [`TempDir`]).
fn load_testkit_pinned(
    label: &str,
    pins: impl FnOnce(&str, &Path) -> String,
) -> (LoadReport, PathBuf, String, TempDir) {
    let dir = TempDir::new(label);
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let hash = sha256_hex(&path);
    let report = pinned(&dir, &pins(&hash, &path));
    (report, path, hash, dir)
}

/// `libtestkit.so` was refused by pinning for `kind`, saying each of `needles`, and
/// the dynamic linker never saw `path`.
#[track_caller]
fn assert_pin_refused(report: &LoadReport, path: &Path, kind: RefusalKind, needles: &[&str]) {
    assert_rejected(record(report, "libtestkit.so"), Stage::Pin, kind, needles);
    assert_not_loaded_by_dynamic_linker(path);
}

#[test]
fn a_correctly_pinned_library_loads() {
    // As `sha256sum /path/*.so` prints it, plus a binary-mode line and a comment.
    let (report, _path, hash, _dir) = load_testkit_pinned("loader-pin-ok", |hash, path| {
        format!(
            "# pinned builds\n{hash}  {}\n{hash} *other.so\n",
            path.display()
        )
    });
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_loaded(&report, "libtestkit.so");
    // Pinning hashes every file, and reports the hash it checked.
    assert_eq!(
        report.libraries[0].file.as_ref().unwrap().sha256.as_deref(),
        Some(hash.as_str())
    );
}

#[test]
fn an_unpinned_library_is_refused_with_the_line_to_add() {
    let other = "0".repeat(64);
    let (report, path, hash, _dir) = load_testkit_pinned("loader-pin-missing", |_, _| {
        format!("{other}  libother.so\n")
    });
    assert_pin_refused(
        &report,
        &path,
        RefusalKind::PinMissing,
        &["not pinned in", &format!("add: {hash}  libtestkit.so")],
    );
}

#[test]
fn a_pin_mismatch_is_refused_showing_both_hashes() {
    let pinned_hash = "ab".repeat(32);
    let (report, path, hash, _dir) = load_testkit_pinned("loader-pin-mismatch", |_, _| {
        format!("{pinned_hash}  libtestkit.so\n")
    });
    assert_pin_refused(
        &report,
        &path,
        RefusalKind::PinMismatch,
        &[&hash, &pinned_hash],
    );
}

#[test]
fn a_name_pinned_twice_with_different_hashes_is_refused_and_the_others_load() {
    let dir = TempDir::new("loader-pin-conflict");
    let a = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let b = dir.copy_in(&cdylib(DC_HINT), "libdc_hint.so");
    let (hash_a, hash_b) = (sha256_hex(&a), sha256_hex(&b));
    let new_build = "ab".repeat(32);
    // A vendor appended its new build's line on upgrade, keeping the old one.
    let pins =
        format!("{hash_a}  libtestkit.so\n{hash_b}  libdc_hint.so\n{new_build}  libtestkit.so\n");
    let report = pinned(&dir, &pins);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_rejected(
        record(&report, "libtestkit.so"),
        Stage::Pin,
        RefusalKind::PinConflict,
        &[
            &format!("line 1: {hash_a}, line 3: {new_build}"),
            "keep one line per file",
        ],
    );
    assert_loaded(&report, "libdc_hint.so");
    assert_not_loaded_by_dynamic_linker(&a);
}

#[test]
fn a_malformed_pin_file_loads_nothing_and_says_which_line() {
    let (report, _path, _hash, _dir) = load_testkit_pinned("loader-pin-bad", |hash, _| {
        format!("{hash}  libtestkit.so\nnot a pin line\n")
    });
    assert_rejected(
        record(&report, "libtestkit.so"),
        Stage::Pin,
        RefusalKind::PinFileUnusable,
        &["line 2", "sha256sum format"],
    );
    assert_eq!(report.warnings.len(), 1);
    assert!(report.warnings[0].contains("no plugin will load"));
}

#[test]
fn a_missing_or_writable_pin_file_loads_nothing() {
    let dir = TempDir::new("loader-pin-unusable");
    dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let mut opts = options(&[dir.path()]);
    opts.pin_file = Some(PathBuf::from("/nonexistent/pins"));
    let report = load_all(&opts);
    assert_rejected(
        record(&report, "libtestkit.so"),
        Stage::Pin,
        RefusalKind::PinFileUnusable,
        &["cannot open pin file /nonexistent/pins"],
    );

    let pin_store = TempDir::new("loader-pin-ww");
    let pins = pin_store.write("pins", "");
    set_mode(&pins, 0o646);
    opts.pin_file = Some(pins);
    let report = load_all(&opts);
    assert_rejected(
        record(&report, "libtestkit.so"),
        Stage::Pin,
        RefusalKind::PinFileUnusable,
        &["pin file", "world-writable"],
    );
}

// ---------------------------------------------------------------------------------
// check_file

#[test]
fn check_file_runs_every_check_on_one_file() {
    let dir = TempDir::new("loader-check");
    let good = dir.copy_in(&cdylib(DC_HINT), "libdc_hint.so");
    let (r, plugin) = check_file(
        &good,
        &LoaderOptions {
            always_hash: true,
            ..LoaderOptions::default()
        },
    );
    assert_eq!(r.verdict, Verdict::Loaded);
    let plugin = plugin.expect("loaded");
    assert_eq!(plugin.record, 0);
    assert_eq!(plugin.info.name, "Acme DC hints Provisioning Target");
    assert_eq!(r.file.unwrap().sha256, Some(sha256_hex(&good)));

    let noroot = dir.copy_in(&cdylib("provtarget-test-noroot"), "whatever.txt");
    let (r, plugin) = check_file(&noroot, &LoaderOptions::default());
    assert!(plugin.is_none());
    assert_rejected(
        &r,
        Stage::RootModule,
        RefusalKind::NoRootSymbol,
        &["not a provtarget plugin"],
    );
    assert_not_loaded_by_dynamic_linker(&noroot);
}

#[test]
fn check_file_applies_the_directory_rule_to_the_parent() {
    let dir = TempDir::new("loader-check-dir");
    let path = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    set_mode(dir.path(), 0o757);
    let (r, plugin) = check_file(&path, &LoaderOptions::default());
    assert!(plugin.is_none());
    assert_rejected(
        &r,
        Stage::Trust,
        RefusalKind::WritableByOthers,
        &["plugin directory", "world-writable", "chmod o-w"],
    );
    set_mode(dir.path(), 0o755);
}

#[test]
fn check_file_refuses_symlinks_missing_files_and_executables() {
    let dir = TempDir::new("loader-check-misc");
    let target = dir.copy_in(&cdylib(TESTKIT), "libtestkit.so");
    let link = dir.path().join("link.so");
    symlink(&target, &link).unwrap();
    let (r, _) = check_file(&link, &LoaderOptions::default());
    assert_rejected(&r, Stage::Trust, RefusalKind::Symlink, &["is a symlink"]);

    let (r, _) = check_file(&dir.path().join("absent.so"), &LoaderOptions::default());
    assert_rejected(
        &r,
        Stage::Open,
        RefusalKind::Unreadable,
        &["cannot open", "No such file"],
    );

    // /usr/bin/true in place: root-owned, in a root-owned directory, so it passes
    // trust and is refused by the format checks, without being loaded.
    let true_bin = Path::new("/usr/bin/true");
    if true_bin.exists() {
        let (r, _) = check_file(true_bin, &LoaderOptions::default());
        assert!(
            matches!(
                r.verdict,
                Verdict::Rejected(Refusal {
                    stage: Stage::RootModule | Stage::Format,
                    ..
                })
            ),
            "{:?}",
            r.verdict
        );
    }
}
