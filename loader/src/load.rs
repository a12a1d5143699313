//! The per-file pipeline: open → trust → read (facts, hash) → pin → ELF pre-check →
//! `dlopen` → verify → construct. Each step either passes or produces the
//! one-line refusal for its [`Stage`].

use std::{
    ffi::OsStr,
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::{Duration, Instant, UNIX_EPOCH},
};

use provtarget_abi::{
    host::{OpenErrorKind, PluginInfo, PluginLibrary, PluginResolver},
    PluginType,
};
use sha2::{Digest, Sha256};

use crate::{
    pins::Pins,
    text::{one_line, printable, shown},
    trust::{self, Dir, OpenFailure},
    FileFacts, LibraryRecord, LoaderOptions, PluginFacts, Stage, Verdict,
};

/// A file larger than this is refused unread: no resolver plugin is near it, and the
/// whole file is held in memory (the sealed copy) for as long as the host runs.
const MAX_LIBRARY_SIZE: u64 = 256 << 20;

/// What one load run shares between files: options, our uid, the parsed pin file.
pub(crate) struct Session<'a> {
    options: &'a LoaderOptions,
    euid: u32,
    /// `None` when pinning is off; `Some(Err)` when the pin file is unusable.
    pins: Option<Result<Pins, String>>,
}

/// A plugin that passed every check, ready to be recorded as loaded.
pub(crate) type Accepted = (PluginInfo, PluginResolver);

/// Why a step refused the file.
type Refusal = (Stage, String);

impl<'a> Session<'a> {
    /// Starts a run: reads the pin file once, and returns the warnings the options
    /// call for (each also logged).
    pub(crate) fn start(options: &'a LoaderOptions) -> (Session<'a>, Vec<String>) {
        let euid = trust::effective_uid();
        let mut warnings = Vec::new();
        if options.insecure_skip_owner_checks {
            let w = "insecure_skip_owner_checks is on: plugin files, their directories and \
                     the pin file are not checked for owner and mode (developer override; \
                     never use it in production)"
                .to_string();
            tracing::warn!("{w}");
            warnings.push(w);
        }
        let pins = options.pin_file.as_deref().map(|path| {
            let pins = Pins::load(path, euid, options.insecure_skip_owner_checks);
            if let Err(reason) = &pins {
                let w = format!("{reason}; no plugin will load until it is fixed");
                tracing::warn!("{w}");
                warnings.push(w);
            }
            pins
        });
        (
            Session {
                options,
                euid,
                pins,
            },
            warnings,
        )
    }

    /// The owner/mode rule for a plugin directory (`None`: passes or skipped by the
    /// developer override).
    pub(crate) fn directory_problem(&self, dir: &Dir) -> Option<String> {
        if self.options.insecure_skip_owner_checks {
            return None;
        }
        match dir.file.metadata() {
            Ok(meta) => trust::owner_mode_problem(&meta, &dir.path, "plugin directory", self.euid),
            Err(e) => Some(format!(
                "cannot stat plugin directory {}: {e}",
                shown(&dir.path)
            )),
        }
    }

    /// Runs every check on `name` in `dir` (shown as `path`). `loaded` lists the
    /// plugins already loaded in this run, for the duplicate-name rule.
    pub(crate) fn examine(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
    ) -> (LibraryRecord, Option<Accepted>) {
        let start = Instant::now();
        let mut record = new_record(path);
        let outcome = self.run(dir, name, path, loaded, &mut record);
        let accepted = match outcome {
            Ok(accepted) => Some(accepted),
            Err((stage, reason)) => {
                record.verdict = Verdict::Rejected { stage, reason };
                None
            }
        };
        record.load_time = start.elapsed();
        log_verdict(&record);
        (record, accepted)
    }

    fn run(
        &self,
        dir: &Dir,
        name: &OsStr,
        path: &Path,
        loaded: &[(String, PathBuf)],
        record: &mut LibraryRecord,
    ) -> Result<Accepted, Refusal> {
        let p = shown(path);

        // 1. Open without following symlinks or blocking, relative to the judged
        //    directory.
        let file = trust::open_in(dir, name, path).map_err(|f| match f {
            OpenFailure::Untrusted(reason) => (Stage::Trust, reason),
            OpenFailure::Failed(reason) => (Stage::Open, reason),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| (Stage::Open, format!("cannot stat {p}: {e}")))?;

        // 2. File type: never skipped, not even by the developer override.
        if let Some(reason) = trust::file_type_problem(&meta, path) {
            return Err((Stage::Trust, reason));
        }

        // 3. Facts from the descriptor, then owner and mode: an untrusted file is
        //    refused before a byte of it is read.
        record.file = Some(FileFacts {
            size: meta.len(),
            mtime: meta.modified().unwrap_or(UNIX_EPOCH),
            sha256: None,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        });
        if !self.options.insecure_skip_owner_checks {
            if let Some(reason) = trust::owner_mode_problem(&meta, path, "", self.euid) {
                return Err((Stage::Trust, reason));
            }
        }

        // 4. Read it once, from the descriptor (into a sealed memfd on Linux): hash,
        //    ELF check and dlopen all see these very bytes.
        if meta.len() > MAX_LIBRARY_SIZE {
            return Err((
                Stage::Format,
                format!(
                    "{p} is {} bytes, larger than any plugin library ({MAX_LIBRARY_SIZE} \
                     bytes at most, as it is held in memory while loaded); strip its debug \
                     information or remove it",
                    meta.len()
                ),
            ));
        }
        let image = Image::read(file, meta.len(), path)
            .map_err(|e| (Stage::Open, format!("cannot read {p}: {e}")))?;
        let bytes = image.bytes();
        if bytes.len() as u64 != meta.len() {
            return Err((
                Stage::Open,
                format!(
                    "{p} changed while being read ({} bytes, then {}); retry once it is \
                     completely copied",
                    meta.len(),
                    bytes.len()
                ),
            ));
        }

        // 5. Hash (when pinning is on or the caller wants it reported) and pinning.
        if self.pins.is_some() || self.options.always_hash {
            let sha256 = hex(&Sha256::digest(bytes));
            if let Some(facts) = record.file.as_mut() {
                facts.sha256 = Some(sha256.clone());
            }
            match &self.pins {
                None => {}
                Some(Ok(pins)) => pins
                    .check(path, name, &sha256)
                    .map_err(|r| (Stage::Pin, r))?,
                Some(Err(reason)) => {
                    return Err((Stage::Pin, format!("{p} not loaded: {reason}")));
                }
            }
        }

        // 6. Well-formed library for this host, exporting the root module: decided
        //    from the bytes, before any of its code can run.
        precheck(bytes, path)?;

        // 7. Load exactly the bytes checked above and read its root module.
        let library = open_library(image, path)?;
        let info = library.info();
        record.plugin = Some(PluginFacts {
            info: info.clone(),
            interface_version: library.interface_version().to_string(),
            config_keys: library.config_keys(),
        });

        // 8. What it says about itself.
        validate_info(&info, path)?;
        let plugin = printable(&info.name);
        if info.plugin_type != PluginType::ProvisionTargetResolver {
            return Err((
                Stage::PluginType,
                format!(
                    "{p}: plugin {plugin} is not a valid ProvisionTargetResolver (it declares \
                     type {} ({})); remove it from the provtarget plugin directory",
                    info.plugin_type, info.plugin_type_id
                ),
            ));
        }
        if let Some((_, earlier)) = loaded.iter().find(|(n, _)| *n == info.name) {
            return Err((
                Stage::Duplicate,
                format!(
                    "{p}: plugin {plugin} is already loaded from {}; remove one of the two files",
                    shown(earlier)
                ),
            ));
        }

        // 9. Construct the resolver (panics come back as errors).
        let resolver = library.new_resolver().map_err(|e| {
            let vendor = printable(info.vendor.trim());
            let whom = if vendor.is_empty() {
                "the plugin's vendor".to_string()
            } else {
                format!("its vendor ({vendor})")
            };
            (
                Stage::Constructor,
                format!(
                    "{p}: plugin {plugin} could not be constructed: {}; check its \
                     requirements or report it to {whom}",
                    one_line(&e)
                ),
            )
        })?;
        Ok((info, resolver))
    }
}

/// A record for `path` before any check: facts unknown, verdict to be decided.
pub(crate) fn new_record(path: &Path) -> LibraryRecord {
    LibraryRecord {
        path: path.to_path_buf(),
        verdict: Verdict::Loaded,
        file: None,
        plugin: None,
        load_time: Duration::ZERO,
    }
}

/// One `tracing` event per verdict: info when loaded, warn when rejected.
pub(crate) fn log_verdict(record: &LibraryRecord) {
    let path = record.path.display();
    match &record.verdict {
        Verdict::Loaded => {
            let plugin = record.plugin.as_ref();
            tracing::info!(
                %path,
                plugin = plugin.map(|p| p.info.name.as_str()).unwrap_or(""),
                version = plugin.map(|p| p.info.version.as_str()).unwrap_or(""),
                interface = plugin.map(|p| p.interface_version.as_str()).unwrap_or(""),
                sha256 = record.file.as_ref().and_then(|f| f.sha256.as_deref()).unwrap_or(""),
                load_time_us = record.load_time.as_micros() as u64,
                "loaded provtarget plugin"
            );
        }
        Verdict::Rejected { stage, reason } => {
            tracing::warn!(%path, stage = stage.as_str(), "refused plugin library: {reason}");
        }
        Verdict::Skipped { reason } => {
            tracing::debug!(%path, "skipped: {reason}");
        }
    }
}

/// One library's bytes, as checked and as loaded.
struct Image {
    /// What `dlopen` loads (through `/proc/self/fd/N` on Linux): a sealed `memfd`
    /// copy, or the file's own descriptor where that copy cannot be made.
    fd: File,
    bytes: Bytes,
}

enum Bytes {
    /// A read-only view of the sealed copy: it can neither shrink (no `SIGBUS`) nor
    /// change under the checks.
    #[cfg(target_os = "linux")]
    Mapped(sys::Mapping),
    /// Read into memory from the file's own descriptor.
    Owned(Vec<u8>),
}

impl Image {
    /// Reads `file` (expected to hold `expected` bytes; one byte more is read, to
    /// notice a file that grew).
    ///
    /// On Linux the kernel copies it (`copy_file_range`, else `sendfile`, through
    /// `std::io::copy`) into a `memfd` named after `path`, sealed against shrinking,
    /// growing, writing and further seals; the checks read a read-only mapping of that
    /// copy and `dlopen` loads it, so the bytes that run are exactly the bytes that
    /// were hashed, pinned and ELF-checked, and changing the file on disk afterwards
    /// (an in-place `cp` truncates, then writes) can neither crash the process with
    /// `SIGBUS` nor change the code that runs. Where `memfd_create` is unavailable
    /// (`ENOSYS`, or refused by policy) the file is read into memory and its own
    /// descriptor is loaded: still the very inode that was judged, but not a frozen
    /// copy of it.
    fn read(file: File, expected: u64, path: &Path) -> std::io::Result<Image> {
        #[cfg(target_os = "linux")]
        match sys::sealed_copy(path, &file, expected) {
            Ok((fd, mapping)) => {
                return Ok(Image {
                    fd,
                    bytes: Bytes::Mapped(mapping),
                })
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => tracing::debug!(
                path = %path.display(),
                "memfd_create is not available (ENOSYS); loading the plugin from its own \
                 descriptor"
            ),
            Err(e) => tracing::warn!(
                path = %path.display(),
                "cannot make a sealed in-memory copy of the plugin ({e}); loading it from \
                 its own descriptor instead, so overwriting the file in place while \
                 provtarget runs can crash it: allow memfd_create and memfd sealing \
                 (seccomp or security policy), and replace plugins by rename \
                 (`install`), never by `cp` over the old file"
            ),
        }
        #[cfg(not(target_os = "linux"))]
        let _ = path;
        let mut file = file;
        file.seek(SeekFrom::Start(0))?;
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        (&mut file)
            .take(expected.saturating_add(1))
            .read_to_end(&mut bytes)?;
        Ok(Image {
            fd: file,
            bytes: Bytes::Owned(bytes),
        })
    }

    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            #[cfg(target_os = "linux")]
            Bytes::Mapped(mapping) => mapping.as_slice(),
            Bytes::Owned(bytes) => bytes,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The ELF pre-check (Linux). Elsewhere the dynamic linker is the only judge.
#[cfg(target_os = "linux")]
fn precheck(bytes: &[u8], path: &Path) -> Result<(), Refusal> {
    use crate::elf::{self, ElfProblem};
    let p = shown(path);
    elf::check(bytes, provtarget_abi::ROOT_SYMBOL).map_err(|problem| match problem {
        ElfProblem::Format(what) => (
            Stage::Format,
            format!("{p} {what}; it is not a plugin library for this host: remove it or install the right build"),
        ),
        ElfProblem::Truncated(what) => (
            Stage::Format,
            format!("{p} is truncated: {what}; copy or reinstall it completely"),
        ),
        ElfProblem::NoRootModule(what) => (
            Stage::RootModule,
            format!(
                "{p} is not a provtarget plugin: {what}; build it with provtarget_abi::export_plugin!"
            ),
        ),
    })
}

#[cfg(not(target_os = "linux"))]
fn precheck(_bytes: &[u8], _path: &Path) -> Result<(), Refusal> {
    Ok(())
}

/// `dlopen`s `image` (already hashed and checked) and checks its root module.
///
/// On Linux `/proc/self/fd/<N>` of the image's descriptor is loaded (see
/// [`Image::read`]); elsewhere the path (the check-to-load race stays open there).
///
/// The library is first opened with `RTLD_NOW | RTLD_LOCAL` (abi_stable opens with
/// `RTLD_LAZY`): every symbol is bound at load time, so a library needing a function
/// nothing provides is refused here, with the dynamic linker's message, instead of
/// killing the process on its first call ("symbol lookup error"). abi_stable's own
/// `dlopen` of the same name then gets this already loaded, fully bound handle.
///
/// Once the dynamic linker has accepted the file, the descriptor it was loaded from is
/// kept open for the life of the process, like the library itself (libraries are never
/// unloaded): glibc recognises an already-loaded library by the name it was opened
/// with, so if `/proc/self/fd/N` were closed and `N` reused for another file, `dlopen`
/// would silently hand back the first library.
fn open_library(image: Image, path: &Path) -> Result<PluginLibrary, Refusal> {
    // The checks are done; the dynamic linker makes its own mappings.
    let Image { fd: image, bytes } = image;
    drop(bytes);
    #[cfg(target_os = "linux")]
    let load_path = {
        use std::os::unix::io::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", image.as_raw_fd()))
    };
    #[cfg(not(target_os = "linux"))]
    let load_path = path.to_path_buf();

    let p = shown(path);
    let in_reason = |text: &str| one_line(&text.replace(&*load_path.to_string_lossy(), &p));

    // Bind every symbol now, or refuse (see above).
    if let Err(dlerror) = sys::dlopen_now(&load_path) {
        tracing::debug!(path = %path.display(), %dlerror, "dlopen(RTLD_NOW) refused the plugin");
        let fix = if crate::discover::proc_missing() {
            "; /proc is not mounted; provtarget needs /proc on Linux"
        } else if dlerror.contains("undefined symbol") {
            "; it needs a symbol that neither this host nor its libraries provide: rebuild \
             it for this host (link with -z now to catch this at build time)"
        } else {
            "; rebuild it for this host or install its missing dependencies"
        };
        return Err((
            Stage::Load,
            format!("{p}: not a loadable library: {}{fix}", in_reason(&dlerror)),
        ));
    }
    // The dynamic linker accepted it: it stays loaded, so must its name.
    keep_open_forever(image);

    #[allow(unsafe_code)]
    // SAFETY: `PluginLibrary::open` runs the library's initialisers (already run by
    // `dlopen_now` above). Every check that can be made without running code has
    // passed: the descriptor is a regular file owned by root or us, not writable by
    // others, in a directory with the same properties, pinned if pinning is on, and
    // (Linux) a complete ELF shared library for this host that exports the root module;
    // what is loaded is a sealed copy of exactly those bytes. A library that exports
    // the symbol and still crashes in its constructor is beyond what an in-process
    // loader can contain (DESIGN.md §5).
    let opened = unsafe { PluginLibrary::open(&load_path) };
    match opened {
        Ok(library) => Ok(library),
        Err(e) => {
            tracing::debug!(path = %path.display(), detail = %e.detail, "plugin library refused");
            let message = in_reason(&e.message);
            let (stage, fix) = match e.kind {
                OpenErrorKind::NotLoadable => (
                    Stage::Load,
                    "; rebuild it for this host or install its missing dependencies",
                ),
                OpenErrorKind::NotAPlugin => (Stage::RootModule, ""),
                OpenErrorKind::AbiStableMismatch => (Stage::AbiHeader, ""),
                OpenErrorKind::InterfaceMismatch | OpenErrorKind::LayoutMismatch => {
                    (Stage::Interface, "")
                }
                OpenErrorKind::RootModule => {
                    (Stage::Constructor, "; report it to the plugin's vendor")
                }
                _ => (Stage::Load, ""),
            };
            Err((stage, format!("{p}: {message}{fix}")))
        }
    }
}

/// Deliberately leaks the descriptor (see [`open_library`]).
fn keep_open_forever(file: File) {
    use std::os::unix::io::IntoRawFd;
    let _fd = file.into_raw_fd();
}

/// The libc calls std does not offer: `memfd_create` and its seals, and `dlopen` with
/// `RTLD_NOW`.
#[allow(unsafe_code)]
mod sys {
    use std::{
        ffi::{CStr, CString},
        path::Path,
    };

    #[cfg(target_os = "linux")]
    use std::{
        fs::File,
        io::{self, Read},
        os::unix::io::{AsRawFd, FromRawFd},
    };

    /// The longest `memfd_create` name Linux accepts (249 bytes, without the NUL).
    #[cfg(target_os = "linux")]
    const MEMFD_NAME_MAX: usize = 249;

    /// A sealed, close-on-exec `memfd` holding the contents of `file` (at most
    /// `expected + 1` bytes, copied by the kernel), named after `path` (its last 249
    /// bytes) so `/proc/<pid>/maps` shows `/memfd:<path> (deleted)`, and a read-only
    /// mapping of it.
    #[cfg(target_os = "linux")]
    pub(super) fn sealed_copy(
        path: &Path,
        file: &File,
        expected: u64,
    ) -> io::Result<(File, Mapping)> {
        use std::os::unix::ffi::OsStrExt;
        let full = path.as_os_str().as_bytes();
        let tail = &full[full.len().saturating_sub(MEMFD_NAME_MAX)..];
        let name: Vec<u8> = tail.iter().copied().filter(|&b| b != 0).collect();
        let name = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: `name` is a NUL-terminated string that outlives the call; the flags
        // are plain integers. The raw syscall (rather than glibc's wrapper, which needs
        // glibc 2.27) returns ENOSYS on kernels without memfd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_memfd_create,
                name.as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::c_int::try_from(fd).map_err(|_| io::ErrorKind::InvalidData)?;
        // SAFETY: `fd` was just returned by a successful memfd_create; nothing else
        // owns it, so the File becomes its sole owner and closes it exactly once.
        let mut memfd = unsafe { File::from_raw_fd(fd) };
        // File to file: std copies in the kernel (copy_file_range, else sendfile), with
        // no buffer of ours in between.
        let copied = io::copy(&mut file.take(expected.saturating_add(1)), &mut memfd)?;
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor we own, with an integer argument.
        if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // The size of the sealed file itself (equal to `copied`, unless something wrote
        // to the memfd before the seals): what is mapped and checked is exactly what
        // `dlopen` will map.
        let size = memfd.metadata()?.len();
        if size != copied {
            return Err(io::Error::other(format!(
                "the in-memory copy holds {size} bytes after {copied} were copied"
            )));
        }
        let len = usize::try_from(size).map_err(|_| io::ErrorKind::InvalidData)?;
        let mapping = Mapping::of(&memfd, len)?;
        Ok((memfd, mapping))
    }

    /// A read-only mapping of a sealed `memfd`, unmapped on drop. The seals forbid
    /// shrinking and writing, so the mapped bytes can neither vanish (`SIGBUS`) nor
    /// change while borrowed.
    #[cfg(target_os = "linux")]
    pub(super) struct Mapping {
        ptr: *mut libc::c_void,
        len: usize,
    }

    #[cfg(target_os = "linux")]
    impl Mapping {
        fn of(memfd: &File, len: usize) -> io::Result<Mapping> {
            if len == 0 {
                // mmap refuses a zero length; an empty file has nothing to map.
                return Ok(Mapping {
                    ptr: std::ptr::null_mut(),
                    len: 0,
                });
            }
            // MAP_PRIVATE, not MAP_SHARED: kernels before 6.7 refuse any shared
            // mapping of a write-sealed memfd (EPERM), read-only or not. The memfd
            // cannot change, so a private read-only view shows the same bytes.
            // SAFETY: a fresh read-only mapping chosen by the kernel (no fixed
            // address), of a descriptor we own, `len` bytes = the size of the sealed
            // file; checked for MAP_FAILED below.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE,
                    memfd.as_raw_fd(),
                    0,
                )
            };
            if ptr == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            Ok(Mapping { ptr, len })
        }

        pub(super) fn as_slice(&self) -> &[u8] {
            if self.len == 0 {
                return &[];
            }
            // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes (unmapped only
            // in Drop, which needs `&mut self`); the memfd behind it is sealed against
            // shrinking and writing, so every byte stays readable and unchanged.
            unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for Mapping {
        fn drop(&mut self) {
            if self.len != 0 {
                // SAFETY: exactly the mapping made in `of`, unmapped once; no slice of
                // it outlives `self` (`as_slice` borrows `self`).
                unsafe { libc::munmap(self.ptr, self.len) };
            }
        }
    }

    /// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`; the handle is never closed (libraries
    /// are never unloaded). On failure, `dlerror`'s text.
    pub(super) fn dlopen_now(path: &Path) -> Result<(), String> {
        use std::os::unix::ffi::OsStrExt;
        let name = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| "the path contains a NUL byte".to_string())?;
        // SAFETY: `name` is NUL-terminated and outlives the call. Running the library's
        // initialisers is what the caller has decided to allow (see `open_library`).
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if !handle.is_null() {
            return Ok(());
        }
        // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next
        // dl* call on this thread; it is copied at once.
        let message = unsafe { libc::dlerror() };
        if message.is_null() {
            return Err("dlopen failed without a message".into());
        }
        // SAFETY: non-NULL, NUL-terminated (see above).
        Err(unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned())
    }
}

/// Plugin info rules: a printable, non-empty name and a semver version.
fn validate_info(info: &PluginInfo, path: &Path) -> Result<(), Refusal> {
    let p = shown(path);
    if info.name.trim().is_empty() {
        return Err((
            Stage::Info,
            format!("{p} declares an empty plugin name; give the plugin a name and rebuild it"),
        ));
    }
    if info.name.chars().any(char::is_control) {
        return Err((
            Stage::Info,
            format!(
                "{p} declares a plugin name with control characters ({}); rename the plugin \
                 and rebuild it",
                printable(&info.name)
            ),
        ));
    }
    if crate::is_reserved_name(&info.name) {
        return Err((
            Stage::Info,
            format!(
                "{p}: plugin name {} is reserved for the built-in resolver; rename the \
                 plugin and rebuild it",
                printable(&info.name)
            ),
        ));
    }
    if let Err(e) = semver::Version::parse(&info.version) {
        return Err((
            Stage::Info,
            format!(
                "{p}: plugin {} declares version `{}`, which is not semver ({e}); use a \
                 version like 1.2.3 and rebuild it",
                printable(&info.name),
                printable(&info.version)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, version: &str) -> PluginInfo {
        PluginInfo {
            name: name.into(),
            version: version.into(),
            plugin_type: PluginType::ProvisionTargetResolver,
            plugin_type_id: 3,
            vendor: "v".into(),
            description: String::new(),
            interface_version: "1.1.0".into(),
            rustc_version: String::new(),
            target: String::new(),
            abi_stable_version: String::new(),
            sdk_version: String::new(),
        }
    }

    #[test]
    fn info_needs_a_name_and_a_semver_version() {
        let p = Path::new("/d/x.so");
        assert!(validate_info(&info("Acme", "1.2.3-rc.1"), p).is_ok());
        let (stage, reason) = validate_info(&info("  ", "1.0.0"), p).unwrap_err();
        assert_eq!(stage, Stage::Info);
        assert!(reason.contains("empty plugin name"), "{reason}");
        let (_, reason) = validate_info(&info("Acme", "1.0"), p).unwrap_err();
        assert!(reason.contains("`1.0`, which is not semver"), "{reason}");
        let (_, reason) = validate_info(&info("A\ncme", "1.0.0"), p).unwrap_err();
        assert!(reason.contains("control characters") && !reason.contains('\n'));
    }

    #[test]
    fn names_reserved_for_the_built_in_resolver_are_refused() {
        let p = Path::new("/d/x.so");
        for name in [
            "default",
            "DEFAULT",
            " Default ",
            "Choria JWT Resolver",
            "choria jwt resolver",
        ] {
            let (stage, reason) = validate_info(&info(name, "1.0.0"), p).unwrap_err();
            assert_eq!(stage, Stage::Info, "{name:?}");
            assert!(
                reason.starts_with("/d/x.so: plugin name ")
                    && reason.contains("is reserved for the built-in resolver; rename the plugin"),
                "{reason}"
            );
            assert!(!reason.contains('\n'));
        }
        for name in ["defaults", "Choria JWT Resolver 2", "Acme"] {
            assert!(validate_info(&info(name, "1.0.0"), p).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
