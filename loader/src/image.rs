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
    pub(crate) fn read(
        file: File,
        expected: u64,
        path: &Path,
        charge: Charge,
    ) -> io::Result<Image> {
        #[cfg(target_os = "linux")]
        match sealed_copy(path, &file, expected) {
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

    /// A descriptor of its own for the sealed copy and its size, for reading it on
    /// another thread while this one goes on (the copy cannot change: what that
    /// thread reads is what is checked and loaded); `None` without a sealed copy.
    pub(crate) fn sealed_reader(&self) -> Option<(File, u64)> {
        match &self.bytes {
            Bytes::Sealed { len } => Some((self.fd.try_clone().ok()?, *len)),
            Bytes::Owned(_) => None,
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
pub(crate) fn each_chunk_of(fd: &File, len: u64, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < len {
        let want = usize::try_from(len - offset)
            .unwrap_or(usize::MAX)
            .min(buffer.len());
        let n = fd.read_at(&mut buffer[..want], offset)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        f(&buffer[..n]);
        offset += n as u64;
    }
    Ok(())
}

/// The bytes read at a time by [`each_chunk_of`].
const CHUNK: usize = 64 << 10;

/// A sealed, close-on-exec `memfd` holding the contents of `file` (at most
/// `expected + 1` bytes, copied by the kernel), and its size once sealed.
#[cfg(target_os = "linux")]
fn sealed_copy(path: &Path, file: &File, expected: u64) -> io::Result<(File, u64)> {
    let mut memfd = sys::memfd_named_after(path)?;
    // File to file: std copies in the kernel (copy_file_range, else sendfile), with no
    // buffer of ours in between.
    let copied = io::copy(&mut file.take(expected.saturating_add(1)), &mut memfd)?;
    sys::seal(&memfd)?;
    // The size of the sealed file itself (equal to `copied`, unless something wrote to
    // the memfd before the seals): what is checked is exactly what `dlopen` will map.
    let size = memfd.metadata()?.len();
    if size != copied {
        return Err(io::Error::other(format!(
            "the in-memory copy holds {size} bytes after {copied} were copied"
        )));
    }
    Ok((memfd, size))
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
        let charge = Charge::reserve(bytes.len() as u64).unwrap();
        let image = Image::read(
            File::open(&source).unwrap(),
            bytes.len() as u64,
            &source,
            charge,
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
