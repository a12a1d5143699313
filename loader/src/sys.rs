//! Every call into the operating system the loader makes, and the only module of the
//! crate allowed to hold `unsafe` code.
//!
//! The file-system calls go through `rustix` (safe wrappers returning owned
//! descriptors), so the unsafe code left is what no wrapper can make safe: running a
//! library's initialisers. That is two calls, [`dlopen_now`] and
//! [`open_plugin_library`]; each block says why the call is allowed here. Besides
//! them, [`LoadedLibrary`] and [`defined_globally`] look symbols up (`dlsym`) in
//! libraries already loaded, to tell why the dynamic linker refused one. Every other
//! module of the crate starts with `#![forbid(unsafe_code)]`, which no inner
//! `allow` can lift. [`CopyMapping`] maps a copy being made, read-only, so that its
//! hash reads the bytes in place.
#![allow(unsafe_code)]
#![deny(clippy::undocumented_unsafe_blocks)]

use std::{
    ffi::OsStr,
    fs::File,
    io,
    os::unix::{ffi::OsStrExt, io::IntoRawFd},
    path::Path,
};

use provtarget_abi::host::{OpenError, PluginLibrary};
use rustix::fs::{AtFlags, Mode, OFlags, CWD};

pub(crate) use rustix::io::Errno;

pub(crate) mod child;
pub(crate) mod exit;
pub(crate) mod last_words;

/// The effective uid of this process: the only owner besides root the trust rule
/// accepts.
pub(crate) fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The flags every plugin file and directory is opened with: read-only, close-on-exec,
/// never following a symlink in the last component (`ELOOP` instead), never blocking
/// on a FIFO, never becoming the controlling terminal.
fn nofollow() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY
}

/// Opens the directory `path` (following symlinks: it is the parent of the directory
/// that is judged, see [`open_dir_in`]).
pub(crate) fn open_parent_dir(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

/// `openat(parent, name, O_DIRECTORY | O_NOFOLLOW | ...)`: `name` is one path
/// component, so `O_NOFOLLOW` covers it, whatever spelling the configured path had.
/// `parent` is `None` for a name relative to the working directory.
pub(crate) fn open_dir_in(parent: Option<&File>, name: &OsStr) -> io::Result<File> {
    let flags = nofollow() | OFlags::DIRECTORY;
    let fd = match parent {
        Some(parent) => rustix::fs::openat(parent, name, flags, Mode::empty())?,
        None => rustix::fs::openat(CWD, name, flags, Mode::empty())?,
    };
    Ok(File::from(fd))
}

/// Whether `name` in `parent` (or the working directory) is a symlink, without
/// following it.
pub(crate) fn is_symlink_in(parent: Option<&File>, name: &OsStr) -> bool {
    let stat = match parent {
        Some(parent) => rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::statat(CWD, name, AtFlags::SYMLINK_NOFOLLOW),
    };
    stat.map(|s| rustix::fs::FileType::from_raw_mode(s.st_mode) == rustix::fs::FileType::Symlink)
        .unwrap_or(false)
}

/// `openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)`:
/// relative to the directory descriptor that was judged, so the file opened is in
/// the very directory that passed the trust rule, even if a path component is renamed
/// meanwhile; a symlink fails with `ELOOP`, a FIFO opens at once.
pub(crate) fn open_in_dir(dir: &File, name: &OsStr) -> io::Result<File> {
    Ok(File::from(rustix::fs::openat(
        dir,
        name,
        nofollow(),
        Mode::empty(),
    )?))
}

/// Opens a pin file (following symlinks, as any configuration file) without blocking
/// on a FIFO or becoming the controlling terminal.
pub(crate) fn open_config_file(path: &Path) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
}

/// The longest `memfd_create` name Linux accepts (249 bytes, without the NUL).
#[cfg(target_os = "linux")]
const MEMFD_NAME_MAX: usize = 249;

/// A close-on-exec `memfd` that allows sealing, named after `path` (its last 249
/// bytes, NULs dropped) so `/proc/<pid>/maps` shows `/memfd:<path> (deleted)`.
/// `ENOSYS` on kernels without memfd (rustix makes the raw system call, so no glibc
/// version is needed).
#[cfg(target_os = "linux")]
pub(crate) fn memfd_named_after(path: &Path) -> io::Result<File> {
    use rustix::fs::MemfdFlags;
    let full = path.as_os_str().as_bytes();
    let tail = &full[full.len().saturating_sub(MEMFD_NAME_MAX)..];
    let name: Vec<u8> = tail.iter().copied().filter(|&b| b != 0).collect();
    let fd = rustix::fs::memfd_create(
        name.as_slice(),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?;
    Ok(File::from(fd))
}

/// Seals `memfd` against shrinking, growing, writing and further seals.
///
/// The write seal waits for the kernel to see no page of the file referenced from
/// elsewhere, and gives up with `EBUSY` when freshly written pages are still held in
/// another CPU's batches (seen on a loaded 2-core machine). The future-write seal
/// (Linux 5.1) then does the same job here: it refuses every later `write` and every
/// new writable shared mapping, and there is no earlier one (this process wrote the
/// copy with `write`/`sendfile`, and maps it only private and read-only, see
/// [`CopyMapping`]).
#[cfg(target_os = "linux")]
pub(crate) fn seal(memfd: &File) -> io::Result<()> {
    use rustix::fs::SealFlags;
    let rest = SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL;
    match rustix::fs::fcntl_add_seals(memfd, rest | SealFlags::WRITE) {
        Err(Errno::BUSY) => seal_future_write(memfd),
        other => Ok(other?),
    }
}

/// [`seal`] with the future-write seal instead of the write seal.
#[cfg(target_os = "linux")]
pub(crate) fn seal_future_write(memfd: &File) -> io::Result<()> {
    use rustix::fs::SealFlags;
    rustix::fs::fcntl_add_seals(
        memfd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
    )?;
    Ok(())
}

/// Whether `memfd` carries the shrink and grow seals and the write or future-write
/// seal (see [`seal`]).
#[cfg(target_os = "linux")]
pub(crate) fn is_sealed(memfd: &File) -> io::Result<bool> {
    use rustix::fs::SealFlags;
    let seals = rustix::fs::fcntl_get_seals(memfd)?;
    Ok(seals.contains(SealFlags::SHRINK | SealFlags::GROW)
        && seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE))
}

/// A read-only private mapping of a `memfd` this process is filling (a followed copy,
/// see [`crate::image::CopyProgress`]), read without copying its bytes again: only
/// the bytes the copy has written are ever looked at.
pub(crate) struct CopyMapping {
    start: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl CopyMapping {
    /// Maps the first `len` bytes (the most the copy may write) of `memfd`, read-only
    /// and private: no shared writable mapping exists for the write seal to refuse,
    /// and the pages are the `memfd`'s own until written here (never).
    pub(crate) fn new(memfd: &File, len: usize) -> io::Result<CopyMapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Err(io::Error::other("nothing to map"));
        }
        // SAFETY: a new mapping chosen by the kernel (no address given), of a
        // descriptor we hold open for the call; it touches no existing memory. The
        // result is checked before use and unmapped exactly once, on drop.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                memfd.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start =
            std::ptr::NonNull::new(start).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(CopyMapping { start, len })
    }

    /// The `want` bytes from `offset`, all below `written`: the bytes the copy has
    /// written so far (it never writes them again, and the file never shrinks while
    /// it is this process's copy being made). `Err` for a range past either bound.
    pub(crate) fn written(&self, offset: u64, want: usize, written: u64) -> io::Result<&[u8]> {
        let end = offset.checked_add(want as u64);
        let (Ok(from), Some(end)) = (usize::try_from(offset), end) else {
            return Err(io::Error::other("past the mapping"));
        };
        if end > written || end > self.len as u64 {
            return Err(io::Error::other("past what was copied"));
        }
        // SAFETY: `from..from + want` lies inside the mapping (checked against `len`)
        // and below `written`, so inside the file (no SIGBUS) and on bytes already
        // written, which nothing writes again: the `memfd` is new and this process's
        // own, written once, front to back, by the copy alone, then sealed (see
        // `CopyProgress`). The slice borrows `self`, so it cannot outlive the mapping.
        Ok(unsafe { std::slice::from_raw_parts(self.start.as_ptr().cast::<u8>().add(from), want) })
    }
}

impl Drop for CopyMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; no slice of it outlives
        // `self` (they borrow it).
        let _ = unsafe { libc::munmap(self.start.as_ptr(), self.len) };
    }
}

/// Leaks `file`'s descriptor on purpose: a library loaded through `/proc/self/fd/N`
/// is never unloaded, so `N` must never name another file (glibc recognises an
/// already-loaded library by the name it was opened with).
pub(crate) fn keep_open_forever(file: File) {
    let _fd = file.into_raw_fd();
}

/// `dlopen(path, RTLD_NOW | RTLD_LOCAL)`; the handle is never closed (libraries are
/// never unloaded). On failure, `dlerror`'s text.
///
/// The caller must have decided that running the library's initialisers is allowed:
/// every check that can be made without running its code has passed (see
/// `pipeline`).
pub(crate) fn dlopen_now(path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};
    // SAFETY: `dlopen` runs the library's initialisers, arbitrary code; that is the
    // decision the caller made after every check that can be made from the bytes
    // (trust, pinning, ELF format, root symbol, panic strategy) passed. libloading
    // copies `dlerror`'s text on failure, before any other dl* call on this thread.
    let opened = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_LOCAL) };
    match opened {
        // Never `dlclose`d: plugin code may still be referenced (resolver objects,
        // thread-locals), and the host never unloads a library.
        Ok(library) => {
            let _handle = library.into_raw();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// A library this process had already loaded, found by name with `RTLD_NOLOAD` (so
/// the lookup never loads anything); the reference it took is dropped with it.
pub(crate) struct LoadedLibrary(std::ptr::NonNull<libc::c_void>);

impl LoadedLibrary {
    /// The library `name` (a `DT_NEEDED` entry: a soname or a path) if this process
    /// has it loaded already; `None` otherwise (not loaded, or a name with a NUL).
    pub(crate) fn find(name: &str) -> Option<LoadedLibrary> {
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: with RTLD_NOLOAD, dlopen only looks the name up among the objects
        // already loaded and takes a reference to one: it maps nothing and runs no
        // initialiser (an object already loaded was initialised when it was loaded).
        // `name` is a valid NUL-terminated string for the whole call.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        std::ptr::NonNull::new(handle).map(LoadedLibrary)
    }

    /// Whether the library (or one of its own dependencies) defines `symbol`.
    pub(crate) fn defines(&self, symbol: &str) -> bool {
        symbol_in(self.0.as_ptr(), symbol)
    }
}

impl Drop for LoadedLibrary {
    fn drop(&mut self) {
        // SAFETY: the handle came from a successful dlopen(RTLD_NOLOAD) and is closed
        // once, here: that drops the reference the lookup took; the library was loaded
        // before the lookup, so its count stays above zero and it is not unloaded.
        let _ = unsafe { libc::dlclose(self.0.as_ptr()) };
    }
}

/// Whether `symbol` is defined in this process's global scope (`dlsym(RTLD_DEFAULT)`:
/// the host executable and the libraries it was linked with), where the dynamic linker
/// looks first for every library's imports.
pub(crate) fn defined_globally(symbol: &str) -> bool {
    symbol_in(libc::RTLD_DEFAULT, symbol)
}

/// `dlsym(handle, symbol)` found a definition. A symbol whose value is null is found
/// too: `dlerror` is cleared before and only its presence is read after, never its
/// text.
fn symbol_in(handle: *mut libc::c_void, symbol: &str) -> bool {
    let Ok(symbol) = std::ffi::CString::new(symbol) else {
        return false;
    };
    // SAFETY: `handle` is RTLD_DEFAULT or a live handle of a library that was already
    // loaded (see `LoadedLibrary`); dlsym only reads symbol tables (for an IFUNC symbol
    // it calls the resolver of that already loaded, already initialised library) and
    // `symbol` is a valid NUL-terminated string. dlerror is thread-local: the clear
    // and the read below see this call's state only.
    unsafe {
        let _ = libc::dlerror();
        let address = libc::dlsym(handle, symbol.as_ptr());
        !address.is_null() || libc::dlerror().is_null()
    }
}

/// abi_stable's view of a library [`dlopen_now`] has already loaded: its header, the
/// interface version and layout checks, and the root module.
pub(crate) fn open_plugin_library(path: &Path) -> Result<PluginLibrary, OpenError> {
    // SAFETY: `PluginLibrary::open` runs the library's initialisers (already run by
    // `dlopen_now` on the same path, which must have succeeded) and reads its root
    // module. Every check that can be made without running code has passed: the
    // descriptor is a regular file owned by root or us, not writable by others, in a
    // directory with the same properties, pinned if pinning is on, and (Linux) a
    // complete ELF shared library for this host that exports the root module and was
    // not built with panic = "abort"; what is loaded is a sealed copy of exactly those
    // bytes. A library that exports the symbol and still crashes in its constructor is
    // beyond what an in-process loader can contain (ARCHITECTURE.md §5, trust model).
    unsafe { PluginLibrary::open(path) }
}

/// `mkdirat(parent, name, mode)` (`parent` `None`: the working directory); the
/// umask applies, as for any `mkdir`.
pub(crate) fn mkdir_in(parent: Option<&File>, name: &OsStr, mode: u32) -> io::Result<()> {
    let mode = Mode::from_raw_mode(mode);
    match parent {
        Some(parent) => rustix::fs::mkdirat(parent, name, mode)?,
        None => rustix::fs::mkdirat(CWD, name, mode)?,
    }
    Ok(())
}

/// Creates `name` in `dir` for writing: it must not exist yet (`O_EXCL`, so neither a
/// planted file nor a symlink is ever written through), then `fchmod`s it to `mode`
/// (whatever the umask).
pub(crate) fn create_new_in(dir: &File, name: &OsStr, mode: u32) -> io::Result<File> {
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    let fd = rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(mode))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
    Ok(File::from(fd))
}

/// `renameat(dir, from, dir, to)`: atomically replaces `to` (a file or a symlink,
/// never what a symlink points to).
pub(crate) fn rename_in(dir: &File, from: &OsStr, to: &OsStr) -> io::Result<()> {
    rustix::fs::renameat(dir, from, dir, to)?;
    Ok(())
}

/// `unlinkat(dir, name)`.
pub(crate) fn unlink_in(dir: &File, name: &OsStr) -> io::Result<()> {
    rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
    Ok(())
}
