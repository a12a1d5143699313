//! Turns plugin directories into loaded resolvers and precise refusals.
//!
//! [`load_all`] scans the configured directories (not recursively) for `*.so` files
//! (`*.dylib` and `*.so` on macOS), in file-name order, and gives every file a
//! [`Verdict`]: loaded, refused ([`Verdict::Rejected`] with a [`Refusal`]: the
//! [`Stage`], a [`RefusalKind`] to branch on, and a one-line message naming the file
//! and the fix), or skipped. Nothing here fails as a whole and nothing panics: a
//! refused file is reported, never fatal, and a missing directory means no plugins
//! from it, with a one-line warning.
//!
//! ```
//! use provtarget_loader::{load_all, LoaderOptions, RefusalKind, Stage};
//!
//! // A missing directory is not an error, only a one-line warning: the host runs its
//! // built-in resolver.
//! let options = LoaderOptions {
//!     directories: vec!["/nonexistent/provtarget".into()],
//!     ..LoaderOptions::default()
//! };
//! let report = load_all(&options);
//! assert!(report.libraries.is_empty() && report.plugins.is_empty());
//! assert!(report.warnings[0].contains("/nonexistent/provtarget does not exist"));
//!
//! // A text file named like a library is refused before any code of it could run;
//! // other files are skipped, saying why.
//! let dir = std::env::temp_dir().join(format!("provtarget-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! std::fs::write(dir.join("broken.so"), "not a library")?;
//! std::fs::write(dir.join("notes.txt"), "hello")?;
//! # use std::os::unix::fs::PermissionsExt;
//! # for name in ["", "broken.so", "notes.txt"] {
//! #     let mode = if name.is_empty() { 0o755 } else { 0o644 };
//! #     std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(mode))?;
//! # }
//! let report = load_all(&LoaderOptions { directories: vec![dir.clone()], ..Default::default() });
//! for library in &report.libraries {
//!     println!("{} {}: {}", library.verdict.status(), library.path.display(),
//!              library.verdict.reason().unwrap_or(""));
//! }
//! let refusal = report.libraries[0].verdict.refusal().expect("refused");
//! assert_eq!((refusal.stage, refusal.kind), (Stage::Format, RefusalKind::NotElf));
//! assert_eq!(report.libraries[1].verdict.status(), "skipped");
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Public API
//!
//! - **Loading**: [`load_all`], [`load_with`] (with the verdict cache and a selection),
//!   [`check_file`] (one file), configured by [`LoaderOptions`].
//! - **The report**: [`LoadReport`] with a [`LibraryRecord`] per file ([`Verdict`],
//!   [`Refusal`], [`RefusalKind`], [`Stage`], [`FileFacts`], [`PluginFacts`],
//!   [`SignatureFacts`]) and the [`LoadedPlugin`]s; [`log_verdicts`].
//! - **Loading in another process first**: [`prepare_file`], [`load_all_gated`],
//!   [`load_with_gated`] hand a [`Prepared`] library to a [`Gate`]; [`load_sealed`]
//!   loads its sealed copy in the child.
//! - **Inputs and policy**: [`VerdictCache`] and its entries, [`SignaturePolicy`] and
//!   [`SignatureMode`], [`read_bounded`] / [`InputFile`] for configuration files,
//!   [`printable`] for showing untrusted text, [`is_candidate_name`],
//!   [`is_reserved_name`].
//! - [`record`]: the one serde model of a library's record (verdict cache, child report,
//!   JSON documents).
//! - [`process`]: child-process and crash helpers for the provtarget host's isolation
//!   only.
//!
//! # What is checked, in order
//!
//! 0. **Directories** are absolute paths, judged by their own last component, however
//!    spelled: repeated and trailing slashes and `.` components are dropped (never
//!    changing what the path names), the parent is opened and the last component is
//!    opened relative to it with `O_DIRECTORY | O_NOFOLLOW`, so `dir/`, `dir/.`,
//!    `dir//` and `a/../dir` are refused exactly when `dir` is a symlink. A relative
//!    directory (its meaning would depend on the working directory), one ending in
//!    `..`, a missing one or a symlink loads nothing and gets a one-line warning.
//! 1. **Trust**, on the *open descriptor*, never on a path: the directory is opened
//!    as in 0 and each file relative to it with
//!    `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK` (a symlink is refused, a FIFO cannot
//!    block). The file must be a regular file; it and its directory must be owned by
//!    root or by the effective uid of this process, and be neither group- nor
//!    world-writable. [`LoaderOptions::insecure_skip_owner_checks`] skips the owner and
//!    mode rule (never the file-type rule) and says so in [`LoadReport::warnings`].
//! 2. **Facts** from the same descriptor: size, mtime, owner, mode ([`FileFacts`]).
//!    Only then is the file read, once: straight into a sealed `memfd` on Linux (see
//!    5), whose bytes are hashed (SHA-256, when pinning is on or
//!    [`LoaderOptions::always_hash`] asks for it), ELF-checked and loaded.
//! 3. **Pinning**, when [`LoaderOptions::pin_file`] is set: a `sha256sum` listing
//!    (`<hash>  <file name>`, matched by file name). A malformed pin file loads
//!    nothing; a file name pinned with two different hashes refuses that library
//!    only (keep one line per file).
//!    **Signatures**, when [`LoaderOptions::signatures`] is `warn` or `enforce`
//!    (automatic: `off` until a key is trusted): `<file>.minisig`, opened relative to
//!    the directory like the library (≤ [`MAX_SIGNATURE_FILE`] bytes, regular file),
//!    verified with `minisign-verify` over the sealed copy, its trusted comment's
//!    `file:` naming this file, its key trusted, not revoked and allowed to sign the
//!    signed `name:`; after loading, `name:` and `interface:` against the plugin's
//!    own facts. See [`SignatureFacts`] for what is reported.
//! 4. **Format** (Linux): ELF class, byte order and machine of this host, a shared
//!    object, every segment and header table inside the file, and the provtarget root
//!    module symbol among its exports. A truncated copy would crash the process inside
//!    `dlopen`; a library without the symbol would run its initialisers for nothing.
//!    A library whose exports include [`provtarget_abi::PANIC_ABORT_SYMBOL`] (which
//!    `export_plugin!` adds to `panic = "abort"` builds) is refused too
//!    ([`RefusalKind::PanicAbortBuild`]): the SDK can only turn a panic into an error
//!    if it unwinds, so its first panic would end the host. Read with the `object`
//!    crate from the sealed copy, headers and dynamic symbol table only.
//! 5. **Load** of exactly the bytes checked: on Linux the file is copied in the kernel
//!    (`copy_file_range`/`sendfile`) into a sealed `memfd` before any check reads it
//!    (named after the file, so `/proc/<pid>/maps` shows
//!    `/memfd:<path> (deleted)`), and `/proc/self/fd/<memfd>` is loaded, so changing or
//!    truncating the file afterwards cannot crash the host or change what runs (where
//!    `memfd_create` is unavailable, the file's own descriptor is loaded instead). It
//!    is opened with `RTLD_NOW`, so a library needing a function nothing provides is
//!    refused here instead of killing the host on its first call. Then the abi_stable
//!    header, the interface version and layout, the plugin info (non-empty name,
//!    not one of [`RESERVED_NAMES`], semver version), the plugin type, the
//!    duplicate-name rule (the later file is refused) and the constructor.
//!
//! Libraries are never unloaded: upgrade a plugin by restarting the host.
//!
//! All `unsafe` code of the crate is in one private module, `sys` (the `dlopen` and
//! abi_stable calls that run a library's code, each with its safety argument); every
//! other module forbids it. System calls go through `rustix`.
//!
//! # What is not checked
//!
//! - **Parent directories.** `O_NOFOLLOW` applies to the last component of a path
//!   only, and the owner/mode rule to the plugin directory itself: the directories
//!   above it (e.g. `/usr/lib/choria`) are neither checked nor protected against a
//!   symlink swap. Whoever can write to one of them can replace the plugin directory.
//!   Keep every parent of a plugin directory owned by root with mode 0755 (the
//!   default for `/usr/lib` and its packages' directories).
//! - **`/proc` is required on Linux.** Directories are listed and libraries loaded
//!   through `/proc/self/fd/N` (that is what ties the load to the descriptor that was
//!   checked). Without `/proc` (some minimal containers and chroots), no directory can
//!   be listed: the report's warning says `/proc is not mounted; provtarget needs /proc
//!   on Linux`, and no plugin loads.
#![deny(missing_docs)]
// Only `sys` may hold unsafe code; every other module forbids it (`forbid` cannot be
// lifted by an inner `allow`), and this root holds no code.
#![deny(unsafe_code)]

mod cache;
mod directory;
mod discover;
#[cfg(target_os = "linux")]
mod dlopen_failure;
mod early;
#[cfg(target_os = "linux")]
mod elf;
mod gate;
mod image;
mod info;
mod input;
mod library;
mod options;
mod pins;
mod pipeline;
pub mod record;
mod report;
mod scan;
mod signature;
mod sys;
mod text;
mod trust;
mod trusted_keys;

pub use cache::{
    host_build_key, CachedSignature, CachedVerdict, FileIdentity, VerdictCache, CACHE_FILE_NAME,
    MAX_CACHE_FILE,
};
pub use discover::is_candidate_name;
pub use gate::{
    check_sealed, load_all_gated, load_sealed, load_with_gated, prepare_file, Gate, Gated,
    Gatekeeper, Prepared, Sealed, Verifying,
};
pub use input::{read_bounded, trust_warnings, InputError, InputFile};
pub use options::{is_reserved_name, LoaderOptions, DEFAULT_DIRECTORY, RESERVED_NAMES};
pub use report::{
    cache_mismatch, cache_mismatch_refusal, log_verdicts, FileFacts, LibraryRecord, LoadReport,
    LoadedPlugin, PluginFacts, Refusal, RefusalKind, Stage, Verdict,
};
pub use scan::{check_file, load_all, load_with};
pub use signature::{SignatureFacts, SignatureState, MAX_SIGNATURE_FILE, SIGNATURE_SUFFIX};
pub use text::printable;
pub use trusted_keys::{SignatureMode, SignaturePolicy, DEFAULT_TRUSTED_KEYS};

/// Process helpers, **for the provtarget host's isolation only** (its child
/// processes, crash messages and signal exits); an embedder that loads plugins in its
/// own process needs none of it, and it may change with the host.
///
/// - [`process::last_words`]: one line on stderr naming the plugin and the call when
///   plugin code kills the process (a crash, `abort()`, `exit()`);
/// - [`process::spawn_with_fds`], [`process::fork_single_threaded`],
///   [`process::close_from`]: starting a child process with chosen descriptors at
///   chosen numbers (the sealed copy of a library, a reply pipe);
/// - [`process::exit_now`]: ending the process at once from any thread, with no lock
///   taken (a signal's second path).
/// - [`process::early`]: the first library copied and hashed on a thread of its own
///   while the host starts (signed plugins cost no more start-up than they must).
pub mod process {
    pub use crate::sys::child::{close_from, fork_single_threaded, spawn_with_fds, Forked};
    pub use crate::sys::exit::now as exit_now;

    /// The first library of a run copied and hashed ahead of its turn, while the host
    /// starts: [`early::pick`] (before a fork: it starts no thread), then
    /// [`early::Early::start`]; [`early::discard`] once the libraries are loaded.
    pub mod early {
        pub use crate::early::{discard, pick, Early};
    }

    /// Last words: one line on stderr naming the plugin and the call when plugin code
    /// kills the process. See [`last_words::install`] and [`last_words::enter`].
    pub mod last_words {
        pub use crate::sys::last_words::{
            enter, install, installed, signal_name, signal_text, Call, Guard, EXIT_STATUS,
        };
    }
}
