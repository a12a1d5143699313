//! A library copied and hashed ahead of its turn: the first library a run will check,
//! picked while the process starts ([`pick`]) and copied into its sealed `memfd` and
//! hashed (the BLAKE2b a prehashed minisign signature covers) on a thread of its own
//! ([`Early::start`]) while the host goes on starting (logging, signals, the trust
//! store, the verdict cache, the other files).
//!
//! It changes no verdict and no rule. When the pipeline reaches that very file (same
//! path, same [`FileIdentity`] as the descriptor it opens and judges itself, same
//! size), it takes the sealed copy and the pending hash instead of copying and
//! hashing again ([`take`]); then every check runs on that sealed copy as always, and
//! that copy is what is loaded, so the bytes that run are still the bytes verified.
//! Any other file, or this one changed in between, is read as usual and the early
//! work is dropped ([`discard`], once the host has loaded its libraries).
//!
//! Only a library whose signature is to be checked and is prehashed (minisign's
//! default) is picked: without one there is no hash to get ahead of.
#![forbid(unsafe_code)]

use std::{
    ffi::OsString,
    fs::File,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{mpsc, Mutex},
};

use crate::{
    cache::FileIdentity,
    directory, discover,
    image::{Charge, Image},
    signature::{Prehash, SigFile},
    sys, LoaderOptions, SignatureMode,
};

/// The library picked by [`pick`], opened, not read yet.
pub struct Early {
    path: PathBuf,
    identity: FileIdentity,
    file: File,
    len: u64,
}

/// An early copy on its way: the sealed image and the hash following it (see
/// [`Prehash::follow`]) come through `copy` once the copy is sealed.
struct Started {
    path: PathBuf,
    identity: FileIdentity,
    copy: mpsc::Receiver<std::io::Result<(Image, Prehash)>>,
}

/// The early copy of this process, if one was started.
static STARTED: Mutex<Option<Started>> = Mutex::new(None);

/// The first library file of the first usable configured directory (the first file
/// a scan checks, and the one a chain picks by default), when its signature will be
/// checked and is prehashed: opened now, without reading it, so that [`Early::start`]
/// can copy and hash it later on a thread of its own. `None` when there is none, or
/// anything about it is unusual (the scan then finds and reports it as usual).
///
/// Starts no thread, so it may run before a single-threaded process forks.
pub fn pick(options: &LoaderOptions) -> Option<Early> {
    // Without a verdict cache the first file is checked right after the trust store
    // is read, the copy and hash starting as early there (`Prehash::follow`): an
    // early copy only adds a thread (measured: no faster). With one, the cache and
    // every other file come first.
    options.cache_dir.as_ref()?;
    match options.signatures.mode {
        Some(SignatureMode::Off) => return None,
        Some(_) => {}
        // Automatic: off while no key can be trusted (there is no such directory).
        None => {
            if !options.signatures.trusted_keys.is_dir() {
                return None;
            }
        }
    }
    let dir_path = options.directories.first()?;
    let dir = directory::open(dir_path, true).ok()?;
    let names = discover::list(&dir).ok()?;
    let name: OsString = names
        .into_iter()
        .find(|n| !discover::is_signature_name(n) && discover::skip_reason(n).is_none())?;
    let path = dir.path.join(&name);
    if !Prehash::wanted(Some(&SigFile::read(&dir.file, &name, &path))) {
        return None;
    }
    let file = sys::open_in_dir(&dir.file, &name).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > crate::pipeline::MAX_LIBRARY_SIZE || meta.nlink() == 0 {
        return None;
    }
    Some(Early {
        identity: FileIdentity::of(&meta),
        len: meta.len(),
        path,
        file,
    })
}

impl Early {
    /// Copies the library into its sealed `memfd` and hashes that copy, on a thread of
    /// its own, for the pipeline to take when it reaches the file. Does nothing when
    /// the copy cannot be held (the bound on libraries held at once) or no thread
    /// starts.
    pub fn start(self) {
        let Ok(charge) = Charge::reserve(self.len) else {
            return;
        };
        let (sent, copy) = mpsc::sync_channel(1);
        let Early {
            path,
            identity,
            file,
            len,
        } = self;
        let copied_path = path.clone();
        let spawned = std::thread::Builder::new()
            .name("early copy".into())
            .spawn(move || {
                let _ = sent.send(copy_followed(file, len, &copied_path, charge));
            });
        if spawned.is_ok() {
            *lock() = Some(Started {
                path,
                identity,
                copy,
            });
        }
    }
}

/// The thread of [`Early::start`]: the sealed copy, hashed by another thread as it is
/// made ([`Prehash::follow`]).
fn copy_followed(
    file: File,
    len: u64,
    path: &Path,
    charge: Charge,
) -> std::io::Result<(Image, Prehash)> {
    let mut prehash = Prehash::none();
    let mut follow = |fd, progress| prehash = Prehash::follow(fd, progress);
    let image = Image::read(file, len, path, charge, Some(&mut follow))?;
    if !image.is_sealed() {
        // No sealed copy here: the pipeline reads the file itself (and says why).
        return Err(std::io::Error::other("no sealed copy"));
    }
    Ok((image, prehash))
}

/// The early copy of the library at `path`, if it is the file whose open descriptor
/// has `identity` (device, inode, size, times) and the copy holds that many bytes: its
/// sealed image, and the hash being computed. Waits for the copy, not for the hash.
/// `None` for any other path (the copy is kept for its own file); for this path
/// changed since, or a copy that failed, `None` and the early work is dropped.
pub(crate) fn take(path: &Path, identity: &FileIdentity) -> Option<(Image, Prehash)> {
    let mut slot = lock();
    if slot.as_ref().is_none_or(|s| s.path != path) {
        return None;
    }
    let started = slot.take()?;
    drop(slot);
    if started.identity != *identity {
        // Dropped unreceived: the hash (if the copy got that far) is told to stop.
        return None;
    }
    let (image, prehash) = started.copy.recv().ok()?.ok()?;
    if image.len() != identity.size {
        return None;
    }
    tracing::debug!(path = ?path, "using the copy and hash made while the host started");
    Some((image, prehash))
}

/// Drops the early copy if no file took it (its hash is told to stop): for the host,
/// once its libraries are loaded.
pub fn discard() {
    drop(lock().take());
}

fn lock() -> std::sync::MutexGuard<'static, Option<Started>> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use provtarget_testsupport::TempDir;

    /// A `.minisig` whose signature is labelled `alg` (`ED`: prehashed, `Ed`: legacy):
    /// enough for choosing what to hash early; nothing here is verified.
    fn labelled_minisig(alg: &[u8; 2]) -> String {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut blob = alg.to_vec();
        blob.extend([7u8; 8 + 64]);
        format!(
            "untrusted comment: x\n{}\ntrusted comment: file:x\n{}\n",
            b64.encode(&blob),
            b64.encode([9u8; 64])
        )
    }

    fn options(dir: &Path, cache: Option<&Path>, mode: Option<SignatureMode>) -> LoaderOptions {
        LoaderOptions {
            directories: vec![dir.to_path_buf()],
            cache_dir: cache.map(Path::to_path_buf),
            signatures: crate::SignaturePolicy {
                mode,
                trusted_keys: dir.join("no-such-keys"),
                revoked: None,
            },
            ..LoaderOptions::default()
        }
    }

    #[test]
    fn only_the_first_library_with_a_prehashed_signature_is_picked() {
        let dir = TempDir::new("early-pick");
        let cache = TempDir::new("early-pick-cache");
        let lib = provtarget_testsupport::cdylib("provtarget-testkit");
        dir.copy_in(&lib, "liba.so");
        dir.copy_in(&lib, "libb.so");
        dir.write("libb.so.minisig", labelled_minisig(b"ED"));
        let enforce = Some(SignatureMode::Enforce);
        // The first library (liba.so) is unsigned: nothing to get ahead of.
        assert!(pick(&options(dir.path(), Some(cache.path()), enforce)).is_none());
        dir.write("liba.so.minisig", labelled_minisig(b"Ed"));
        // A legacy signature covers the bytes themselves: no hash either.
        assert!(pick(&options(dir.path(), Some(cache.path()), enforce)).is_none());
        dir.write("liba.so.minisig", labelled_minisig(b"ED"));
        let picked = pick(&options(dir.path(), Some(cache.path()), enforce)).expect("picked");
        assert_eq!(picked.path, dir.path().join("liba.so"));
        // Signatures off, no verdict cache, or automatic with no trusted-keys
        // directory: nothing is picked.
        let off = Some(SignatureMode::Off);
        assert!(pick(&options(dir.path(), Some(cache.path()), off)).is_none());
        assert!(pick(&options(dir.path(), None, enforce)).is_none());
        assert!(pick(&options(dir.path(), Some(cache.path()), None)).is_none());
        // A first "library" that is a FIFO is left to the scan (never opened to block).
        let fifos = TempDir::new("early-pick-fifo");
        fifos.fifo("liba.so");
        fifos.write("liba.so.minisig", labelled_minisig(b"ED"));
        assert!(pick(&options(fifos.path(), Some(cache.path()), enforce)).is_none());
    }

    #[test]
    fn the_copy_is_taken_only_for_the_very_file_picked() {
        let dir = TempDir::new("early-take");
        let cache = TempDir::new("early-take-cache");
        let src = provtarget_testsupport::cdylib("provtarget-testkit");
        let lib = dir.copy_in(&src, "liba.so");
        dir.write("liba.so.minisig", labelled_minisig(b"ED"));
        let opts = options(dir.path(), Some(cache.path()), Some(SignatureMode::Enforce));
        let identity = |path: &Path| FileIdentity::of(&std::fs::metadata(path).unwrap());
        let bytes = std::fs::read(&lib).unwrap();
        let want = blake2b_simd::Params::new().hash_length(64).hash(&bytes);

        // The picked file, unchanged: its sealed copy, and the BLAKE2b of that copy.
        pick(&opts).expect("picked").start();
        assert!(take(&dir.path().join("other.so"), &identity(&lib)).is_none());
        let (image, prehash) = take(&lib, &identity(&lib)).expect("taken");
        assert!(image.is_sealed());
        assert_eq!(image.bytes().unwrap(), bytes);
        assert_eq!(prehash.finish_for_test(&image).as_slice(), want.as_bytes());
        // Taken once.
        assert!(take(&lib, &identity(&lib)).is_none());

        // Replaced after it was picked (another inode): not used.
        pick(&opts).expect("picked").start();
        let replaced = dir.path().join("liba.so.new");
        std::fs::copy(&src, &replaced).unwrap();
        std::fs::rename(&replaced, &lib).unwrap();
        assert!(take(&lib, &identity(&lib)).is_none());

        // Not taken by any file: dropped at the end of the scan.
        pick(&opts).expect("picked").start();
        discard();
        assert!(take(&lib, &identity(&lib)).is_none());
    }
}
