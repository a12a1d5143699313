//! One library's bytes, read once: what the checks read (hash, ELF) and what
//! `dlopen` loads are the same bytes.
//!
//! On Linux the kernel copies the file (`copy_file_range`, else `sendfile`, through
//! `std::io::copy`) into a `memfd` named after it, sealed against shrinking, growing,
//! writing and further seals. The checks read that copy and `dlopen` loads it through
//! `/proc/self/fd/N`, so changing the file on disk afterwards (an in-place `cp`
//! truncates, then writes) can neither crash the process with `SIGBUS` nor change the
//! code that runs. Where `memfd_create` is unavailable (`ENOSYS`, or refused by
//! policy) the file is read into memory for the checks and its own descriptor is
//! loaded: still the very inode that was judged, but not a frozen copy of it.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::FileExt,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use sha2::{Digest, Sha256};

use crate::{
    elf::{self, ElfProblem},
    sys,
};

/// A library's bytes, as checked and as loaded.
pub(crate) struct Image {
    /// What `dlopen` loads (through `/proc/self/fd/N` on Linux): the sealed `memfd`
    /// copy, or the file's own descriptor where that copy cannot be made.
    fd: File,
    /// Where the checks read from.
    bytes: Bytes,
    /// Its share of [`MAX_HELD_TOTAL`], given back when the image is dropped.
    charge: Charge,
}

/// At most this many bytes of library copies are held by this process at once, all
/// libraries together (each is at most 256 MiB): a directory of large files (eight
/// 250 MB padded copies of one plugin) must not take gigabytes of memory. A library
/// that would go over it is refused unread (`too-large`), naming the bound. A copy
/// loaded in this process is held for the life of the process and keeps its share;
/// others give it back when they are dropped (judged, or handed to a child).
pub(crate) const MAX_HELD_TOTAL: u64 = 512 << 20;

/// Bytes of library copies held now (see [`MAX_HELD_TOTAL`]).
static HELD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A share of [`MAX_HELD_TOTAL`], given back on drop unless [`Charge::keep`] says the
/// memory stays held for the life of the process.
pub(crate) struct Charge(u64);

impl Charge {
    /// Takes `bytes` of the bound, or `Err` with the bytes held now when they do not
    /// fit.
    pub(crate) fn reserve(bytes: u64) -> Result<Charge, u64> {
        use std::sync::atomic::Ordering;
        let mut held = HELD.load(Ordering::Relaxed);
        loop {
            if held.saturating_add(bytes) > MAX_HELD_TOTAL {
                return Err(held);
            }
            match HELD.compare_exchange_weak(
                held,
                held + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(Charge(bytes)),
                Err(now) => held = now,
            }
        }
    }

    /// The memory stays held for the life of the process: its share is never given
    /// back.
    fn keep(&mut self) {
        self.0 = 0;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, std::sync::atomic::Ordering::AcqRel);
    }
}

enum Bytes {
    /// Read from `fd` itself, a sealed copy: it can neither shrink nor change.
    Sealed {
        /// Its size, taken after sealing.
        len: u64,
    },
    /// Read into memory from the file's own descriptor (no `memfd`).
    Owned(Vec<u8>),
}

impl Image {
    /// Reads `file` (expected to hold `expected` bytes; one byte more is read, to
    /// notice a file that grew). `path` names the copy and the log lines.
    /// `charge` is its share of [`MAX_HELD_TOTAL`] (reserved by the caller).
    ///
    /// `follow`, when given, is called once the sealed copy is created and before
    /// anything is copied into it, with a descriptor of its own for it and the
    /// [`CopyProgress`] to read it by as it grows (see [`each_chunk_as_copied`]): a
    /// thread can then hash the copy while it is made. It is not called when no sealed
    /// copy can be made.
    pub(crate) fn read(
        file: File,
        expected: u64,
        path: &Path,
        charge: Charge,
        follow: Option<&mut dyn FnMut(File, Arc<CopyProgress>)>,
    ) -> io::Result<Image> {
        #[cfg(not(target_os = "linux"))]
        let _ = follow;
        #[cfg(target_os = "linux")]
        match sealed_copy(path, &file, expected, follow) {
            Ok((fd, len)) => {
                return Ok(Image {
                    fd,
                    bytes: Bytes::Sealed { len },
                    charge,
                })
            }
            Err(e) if e.raw_os_error() == Some(sys::Errno::NOSYS.raw_os_error()) => {
                tracing::debug!(
                    path = ?path,
                    "memfd_create is not available (ENOSYS); loading the plugin from its own \
                     descriptor"
                )
            }
            Err(e) => tracing::warn!(
                path = ?path,
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
            charge,
        })
    }

    /// An image from a descriptor another process made with [`Image::read`]: it must
    /// be a `memfd` sealed against shrinking, growing and writing (so what the checks
    /// read is what is loaded); anything else is refused.
    #[cfg(target_os = "linux")]
    pub(crate) fn from_sealed(fd: File) -> io::Result<Image> {
        if !sys::is_sealed(&fd)? {
            return Err(io::Error::other(
                "the descriptor handed over is not a sealed in-memory copy",
            ));
        }
        let len = fd.metadata()?.len();
        Ok(Image {
            fd,
            bytes: Bytes::Sealed { len },
            // Made and counted by the process that handed it over.
            charge: Charge(0),
        })
    }

    /// The sealed copy (or the file's descriptor), to hand to another process.
    pub(crate) fn fd(&self) -> &File {
        &self.fd
    }

    /// Whether the bytes live in a sealed copy that can be handed to a child.
    pub(crate) fn is_sealed(&self) -> bool {
        matches!(self.bytes, Bytes::Sealed { .. })
    }

    /// How many bytes were read.
    pub(crate) fn len(&self) -> u64 {
        match &self.bytes {
            Bytes::Sealed { len } => *len,
            Bytes::Owned(bytes) => bytes.len() as u64,
        }
    }

    /// The SHA-256 of the bytes, lower-case hex.
    pub(crate) fn sha256(&self) -> io::Result<String> {
        let mut hasher = Sha256::new();
        self.each_chunk(|chunk| hasher.update(chunk))?;
        Ok(hex(&hasher.finalize()))
    }

    /// Feeds the bytes the checks read (the sealed copy, or the bytes read into
    /// memory) to `f`, in chunks, in order.
    pub(crate) fn each_chunk(&self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        match &self.bytes {
            Bytes::Owned(bytes) => {
                f(bytes);
                Ok(())
            }
            Bytes::Sealed { len } => each_chunk_of(&self.fd, *len, f),
        }
    }

    /// All the bytes, read into memory (for a legacy signature, which covers the
    /// bytes themselves rather than their hash).
    pub(crate) fn bytes(&self) -> io::Result<Vec<u8>> {
        match &self.bytes {
            Bytes::Owned(bytes) => Ok(bytes.clone()),
            Bytes::Sealed { len } => {
                let mut out = vec![0u8; usize::try_from(*len).map_err(io::Error::other)?];
                self.fd.read_exact_at(&mut out, 0)?;
                Ok(out)
            }
        }
    }

    /// The ELF pre-check (see [`elf::check`]) over these bytes.
    pub(crate) fn check_elf(
        &self,
        root_symbol: &str,
        panic_abort_symbol: &str,
    ) -> Result<(), ElfProblem> {
        match &self.bytes {
            Bytes::Owned(bytes) => elf::check(
                bytes.as_slice(),
                self.len(),
                root_symbol,
                panic_abort_symbol,
            ),
            // Reads only the headers and tables it needs, from the sealed copy.
            Bytes::Sealed { len } => elf::check(
                &object::ReadCache::new(&self.fd),
                *len,
                root_symbol,
                panic_abort_symbol,
            ),
        }
    }

    /// The descriptor `dlopen` loads; the bytes read for the checks are dropped. The
    /// copy stays held for the life of the process (libraries are never unloaded), so
    /// its share of [`MAX_HELD_TOTAL`] is kept.
    pub(crate) fn into_file(mut self) -> File {
        self.charge.keep();
        self.fd
    }
}

/// Reads the first `len` bytes of `fd` (from offset 0, whatever its file position) in
/// chunks, in order, into `f`: [`CHUNK`] bytes at a time through one buffer, small
/// enough to stay in the CPU's cache for the hash that reads it and to come from the
/// heap rather than a fresh mapping per pass.
pub(crate) fn each_chunk_of(fd: &File, len: u64, f: impl FnMut(&[u8])) -> io::Result<()> {
    // A copy already sealed at `len` bytes, read by the same loop.
    each_chunk_as_copied(
        fd,
        None,
        &CopyProgress::sealed(len),
        &AtomicBool::new(false),
        f,
    )
    .map(drop)
}

/// The bytes read at a time by [`each_chunk_of`] and [`each_chunk_as_copied`], and
/// copied at a time by a followed copy.
const CHUNK: usize = 64 << 10;

/// How far a copy into a sealed `memfd` has got ([`Image::read`] with `follow`),
/// shared with the thread that reads the copy as it grows.
///
/// Why reading before the seal still reads the bytes that are loaded: the `memfd` is
/// new and this process's own (no other process holds it; one that could open it
/// through `/proc/<pid>/fd` could as well write this process's memory), it is written
/// once, front to back, by the copy alone, and a byte is read only after it is written
/// ([`CopyProgress::written`]). The seals then forbid any later write, so every byte
/// read is the byte the checks after it and `dlopen` see.
pub(crate) struct CopyProgress {
    /// Bytes written so far (never written again).
    written: AtomicU64,
    /// The sealed length once the copy is sealed; [`COPYING`] until then,
    /// [`ABANDONED`] when the copy failed.
    end: AtomicU64,
    /// The thread reading the copy, woken at each step.
    reader: OnceLock<std::thread::Thread>,
    /// The most bytes the copy may write (its `memfd` is this process's new one), for
    /// a reader that maps it rather than reading it; `None` for a copy already sealed.
    limit: Option<u64>,
}

/// [`CopyProgress::end`] while the copy is made.
const COPYING: u64 = u64::MAX;
/// [`CopyProgress::end`] when the copy failed (no sealed copy will exist).
const ABANDONED: u64 = u64::MAX - 1;

impl CopyProgress {
    /// Nothing copied yet into a new `memfd` of this process, which the copy fills
    /// with at most `limit` bytes.
    pub(crate) fn new(limit: u64) -> CopyProgress {
        CopyProgress {
            written: AtomicU64::new(0),
            end: AtomicU64::new(COPYING),
            reader: OnceLock::new(),
            limit: Some(limit),
        }
    }

    /// A copy already sealed at `len` bytes.
    fn sealed(len: u64) -> CopyProgress {
        CopyProgress {
            written: AtomicU64::new(len),
            end: AtomicU64::new(len),
            reader: OnceLock::new(),
            limit: None,
        }
    }

    /// A read-only private mapping of the copy's `memfd` (`fd`), to read it in place
    /// while it is made ([`each_chunk_as_copied`]); `None` for a copy already sealed,
    /// or when it cannot be mapped (it is then read through a buffer).
    pub(crate) fn map(&self, fd: &File) -> Option<sys::CopyMapping> {
        let limit = usize::try_from(self.limit?).ok()?;
        sys::CopyMapping::new(fd, limit).ok()
    }

    /// Names the thread to wake when the copy grows or ends.
    pub(crate) fn set_reader(&self, thread: std::thread::Thread) {
        let _ = self.reader.set(thread);
    }

    /// Wakes the reading thread (a wake-up before it sleeps is kept for it).
    pub(crate) fn wake(&self) {
        if let Some(reader) = self.reader.get() {
            reader.unpark();
        }
    }

    fn advance(&self, written: u64) {
        self.written.store(written, Ordering::Release);
        self.wake();
    }

    fn end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
        self.wake();
    }
}

/// Marks a followed copy abandoned unless it was sealed (any early return).
struct AbandonUnlessSealed<'a>(&'a CopyProgress);

impl Drop for AbandonUnlessSealed<'_> {
    fn drop(&mut self) {
        let _ =
            self.0
                .end
                .compare_exchange(COPYING, ABANDONED, Ordering::AcqRel, Ordering::Acquire);
        self.0.wake();
    }
}

/// Reads the copy that `progress` follows, in order, into `f`, each byte once it is
/// written, until the copy is sealed: in place through `mapping`, its read-only private
/// mapping ([`CopyProgress::map`]), when given, else through `fd` (a descriptor of that
/// `memfd`) and a buffer. Returns its sealed length, every byte of which was given to
/// `f`; fails when the copy is abandoned or `stop` is set.
pub(crate) fn each_chunk_as_copied(
    fd: &File,
    mapping: Option<&sys::CopyMapping>,
    progress: &CopyProgress,
    stop: &AtomicBool,
    mut f: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut buffer = Vec::new();
    let mut offset = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("stopped"));
        }
        // `end` first: once it is set, every byte up to it is written.
        let end = progress.end.load(Ordering::Acquire);
        if end == ABANDONED {
            return Err(io::Error::other("the sealed copy was not completed"));
        }
        let available = if end == COPYING {
            progress.written.load(Ordering::Acquire)
        } else {
            end
        };
        if offset < available {
            let want = usize::try_from(available - offset)
                .unwrap_or(usize::MAX)
                .min(CHUNK);
            let n = match mapping {
                Some(mapping) => {
                    f(mapping.written(offset, want, available)?);
                    want
                }
                None => {
                    buffer.resize(CHUNK, 0);
                    let n = fd.read_at(&mut buffer[..want], offset)?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    f(&buffer[..n]);
                    n
                }
            };
            offset += n as u64;
        } else if end != COPYING {
            return Ok(offset);
        } else {
            std::thread::park();
        }
    }
}

/// A sealed, close-on-exec `memfd` holding the contents of `file` (at most
/// `expected + 1` bytes, copied by the kernel), and its size once sealed.
///
/// With `follow`, the copy is made [`CHUNK`] bytes at a time (`sendfile`) and
/// followed: `follow` gets a descriptor of the new `memfd` and the [`CopyProgress`]
/// before the first byte is copied; the progress is advanced after each chunk and
/// ended once the copy is sealed and its size checked (or abandoned on any failure).
/// Without, std copies it in one step.
#[cfg(target_os = "linux")]
fn sealed_copy(
    path: &Path,
    file: &File,
    expected: u64,
    follow: Option<&mut dyn FnMut(File, Arc<CopyProgress>)>,
) -> io::Result<(File, u64)> {
    let mut memfd = sys::memfd_named_after(path)?;
    let limit = expected.saturating_add(1);
    let progress = Arc::new(CopyProgress::new(limit));
    let abandon = AbandonUnlessSealed(&progress);
    let copied = match follow {
        // File to file: std copies in the kernel (copy_file_range, else sendfile),
        // with no buffer of ours in between.
        None => io::copy(&mut file.take(limit), &mut memfd)?,
        Some(follow) => {
            follow(memfd.try_clone()?, Arc::clone(&progress));
            copy_in_steps(file, &mut memfd, limit, &progress)?
        }
    };
    sys::seal(&memfd)?;
    // The size of the sealed file itself (equal to `copied`, unless something wrote to
    // the memfd before the seals): what is checked is exactly what `dlopen` will map.
    let size = memfd.metadata()?.len();
    if size != copied {
        return Err(io::Error::other(format!(
            "the in-memory copy holds {size} bytes after {copied} were copied"
        )));
    }
    progress.end(size);
    // Sealed: the guard finds the end set and leaves it.
    drop(abandon);
    Ok((memfd, size))
}

/// Copies up to `limit` bytes of `file` into `memfd`, [`CHUNK`] at a time, advancing
/// `progress` after each; how many were copied.
#[cfg(target_os = "linux")]
fn copy_in_steps(
    file: &File,
    memfd: &mut File,
    limit: u64,
    progress: &CopyProgress,
) -> io::Result<u64> {
    let mut copied = 0u64;
    while copied < limit {
        let want = usize::try_from(limit - copied)
            .unwrap_or(usize::MAX)
            .min(CHUNK);
        let n = match rustix::fs::sendfile(&*memfd, file, None, want) {
            Ok(n) => n as u64,
            Err(sys::Errno::INTR) => continue,
            // No sendfile between these two: the rest by std's copy (one step).
            Err(_) => io::copy(&mut file.take(limit - copied), memfd)?,
        };
        if n == 0 {
            break;
        }
        copied += n;
        progress.advance(copied);
    }
    Ok(copied)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
    }

    #[test]
    fn a_sealed_copy_hashes_like_the_file_and_cannot_be_changed() {
        let source = provtarget_testsupport::cdylib("provtarget-testkit");
        let bytes = std::fs::read(&source).unwrap();
        // Followed: a thread reads the copy as it is made, every byte once written.
        let mut reader = None;
        let mut follow = |fd: File, progress: Arc<CopyProgress>| {
            let reading = Arc::clone(&progress);
            let thread = std::thread::spawn(move || {
                let mut seen = Vec::new();
                let stop = AtomicBool::new(false);
                each_chunk_as_copied(&fd, None, &reading, &stop, |c| seen.extend_from_slice(c))
                    .map(|len| (len, seen))
            });
            progress.set_reader(thread.thread().clone());
            reader = Some(thread);
        };
        let charge = Charge::reserve(bytes.len() as u64).unwrap();
        let followed = Image::read(
            File::open(&source).unwrap(),
            bytes.len() as u64,
            &source,
            charge,
            Some(&mut follow),
        )
        .unwrap();
        let (len, seen) = reader.expect("followed").join().unwrap().unwrap();
        assert_eq!(len, bytes.len() as u64);
        assert!(seen == bytes, "the thread read other bytes than the file's");
        assert_eq!(followed.len(), bytes.len() as u64);
        drop(followed);
        let charge = Charge::reserve(bytes.len() as u64).unwrap();
        let image = Image::read(
            File::open(&source).unwrap(),
            bytes.len() as u64,
            &source,
            charge,
            None,
        )
        .unwrap();
        assert_eq!(image.len(), bytes.len() as u64);
        assert_eq!(image.sha256().unwrap(), hex(&Sha256::digest(&bytes)));
        assert!(matches!(image.bytes, Bytes::Sealed { .. }));
        let file = image.into_file();
        // Sealed: neither writing nor truncating is allowed.
        assert!(file.write_at(b"x", 0).is_err());
        assert!(file.set_len(0).is_err());
    }

    /// A copy being made is read in place, through a read-only private mapping: only
    /// what was written, each byte as written, and the mapping does not stop the
    /// write seal that follows.
    #[test]
    fn a_copy_read_in_place_sees_what_was_written_and_still_seals() {
        let memfd = sys::memfd_named_after(Path::new("/mapped-test")).expect("memfd");
        let mapping = sys::CopyMapping::new(&memfd, 3 * 4096 + 1).expect("mapped");
        let first = vec![0xa5u8; 4096 + 7];
        memfd.write_at(&first, 0).expect("write");
        assert_eq!(mapping.written(0, first.len(), 4096 + 7).unwrap(), first);
        // Not past what was written, nor past the mapping.
        assert!(mapping.written(4096, 8, 4096 + 7).is_err());
        assert!(mapping.written(0, 3 * 4096 + 2, u64::MAX).is_err());
        assert!(mapping.written(u64::MAX, 1, u64::MAX).is_err());
        // Bytes written after the mapping was made are seen too.
        memfd.write_at(b"tail", 4096 + 7).expect("write");
        assert_eq!(mapping.written(4096 + 7, 4, 4096 + 11).unwrap(), b"tail");
        assert!(sys::CopyMapping::new(&memfd, 0).is_err());
        sys::seal(&memfd).expect("sealed with the mapping in place");
        assert!(sys::is_sealed(&memfd).unwrap());
        assert!(memfd.write_at(b"x", 0).is_err());
    }

    /// The seal used when the write seal is refused with EBUSY (see `sys::seal`): a
    /// copy sealed so is accepted as sealed (a child takes it) and cannot change.
    #[test]
    fn a_copy_sealed_against_future_writes_is_sealed_too() {
        let memfd = sys::memfd_named_after(Path::new("/future-write-test")).expect("memfd");
        memfd.write_at(b"\x7fELF and more", 0).expect("write");
        assert!(!sys::is_sealed(&memfd).unwrap(), "not sealed yet");
        sys::seal_future_write(&memfd).expect("seal");
        assert!(sys::is_sealed(&memfd).unwrap());
        assert!(memfd.write_at(b"x", 0).is_err());
        assert!(memfd.set_len(0).is_err());
        assert!(memfd.set_len(100).is_err());
        let image = Image::from_sealed(memfd.try_clone().unwrap()).expect("taken as sealed");
        assert_eq!(image.len(), 13);
    }
}
