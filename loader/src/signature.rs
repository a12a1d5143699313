//! Detached minisign signatures: `libacme.so` is signed by `libacme.so.minisig` beside
//! it, as `minisign -S -m libacme.so -t "file:libacme.so ..."` writes it (prehashed or
//! legacy). Verified with the `minisign-verify` crate over the *sealed copy* of the
//! library, the very bytes that are then loaded here or handed to a child.
//!
//! What a signature binds (its trusted comment, which the signature covers):
//! space-separated fields, `file:<basename>` required (a renamed library, or a
//! signature moved to another file, is refused), `interface:<x.y>` optional (checked
//! against the interface the library is read with) and `name:<plugin name>` optional,
//! the last field when present, running to the end of the line (checked against the
//! plugin's own name once loaded, and against the signing key's name limit before
//! anything of it runs). Other fields (minisign's default `timestamp:`) are ignored.
#![forbid(unsafe_code)]

use std::{
    ffi::OsStr,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use crate::{
    image::{each_chunk_as_copied, CopyProgress, Image},
    sys::{self, Errno},
    text::{printable, shown},
    trusted_keys::{key_id_of, key_id_text, SignatureMode, TrustStore, TrustedKey},
    FileFacts, LibraryRecord, PluginFacts, Refusal, RefusalKind, Stage,
};

/// A `.minisig` larger than this is refused unread (a real one is about 300 bytes).
pub const MAX_SIGNATURE_FILE: u64 = 4096;

/// The suffix of a signature file.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// What the signature check said about one library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureState {
    /// A valid signature from a trusted key, binding this file.
    Signed,
    /// No `.minisig` beside the library.
    Unsigned,
    /// A signature that does not make the library trusted (unreadable, garbage, bad,
    /// untrusted or revoked key, revoked build, wrong file, name or interface).
    Refused,
    /// Signatures are not checked (`signatures = off`).
    Off,
}

impl SignatureState {
    /// `signed`, `unsigned`, `refused` or `off`, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureState::Signed => "signed",
            SignatureState::Unsigned => "unsigned",
            SignatureState::Refused => "refused",
            SignatureState::Off => "off",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<SignatureState> {
        Some(match s {
            "signed" => SignatureState::Signed,
            "unsigned" => SignatureState::Unsigned,
            "refused" => SignatureState::Refused,
            "off" => SignatureState::Off,
            _ => return None,
        })
    }
}

/// A library's signature as reported (`buildinfo`, `plugins check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureFacts {
    /// Signed, unsigned, refused or off.
    pub state: SignatureState,
    /// The id of the key that made the signature (as minisign prints it), when the
    /// signature could be read.
    pub key_id: Option<String>,
    /// The signature's trusted comment, when it could be read (raw text).
    pub trusted_comment: Option<String>,
    /// Why it is unsigned or refused: the one-line message.
    pub reason: Option<String>,
}

impl SignatureFacts {
    fn off() -> SignatureFacts {
        SignatureFacts {
            state: SignatureState::Off,
            key_id: None,
            trusted_comment: None,
            reason: None,
        }
    }

    /// One line for reports: `signed by <key id> ("<trusted comment>")`, `unsigned`,
    /// `refused: <reason>` or `off`.
    pub fn summary(&self) -> String {
        match self.state {
            SignatureState::Signed => format!(
                "signed by {} (\"{}\")",
                self.key_id.as_deref().unwrap_or("?"),
                printable(self.trusted_comment.as_deref().unwrap_or(""))
            ),
            SignatureState::Unsigned => "unsigned".into(),
            SignatureState::Refused => format!(
                "refused: {}",
                printable(self.reason.as_deref().unwrap_or(""))
            ),
            SignatureState::Off => "not checked (signatures = off)".into(),
        }
    }

    /// As JSON: `{"state", "key_id", "trusted_comment", "reason"}`
    /// ([`SignatureRecord`](crate::record::SignatureRecord)).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(crate::record::SignatureRecord::from(self))
            .unwrap_or(serde_json::Value::Null)
    }

    /// The inverse of [`SignatureFacts::to_json`]: `None` when a field is missing,
    /// unknown or of the wrong type.
    pub fn from_json(v: &serde_json::Value) -> Option<SignatureFacts> {
        serde_json::from_value::<crate::record::SignatureRecord>(v.clone())
            .ok()
            .map(SignatureFacts::from)
    }
}

/// The signature file read beside a library, before it is judged.
pub(crate) enum SigFile {
    /// No `.minisig`.
    Missing,
    /// Its bytes (at most [`MAX_SIGNATURE_FILE`]) and its identity (from `fstat` of the
    /// descriptor they were read from).
    Bytes(Vec<u8>, String),
    /// It cannot be used: the one-line reason.
    Bad(String),
}

/// The name of the signature file of the library `name`.
fn signature_name(name: &OsStr) -> std::ffi::OsString {
    let mut sig_name = name.to_os_string();
    sig_name.push(SIGNATURE_SUFFIX);
    sig_name
}

/// What identifies one version of a signature file (device, inode, size, mtime and
/// ctime with nanoseconds: any write, rename over or `chmod` changes ctime).
fn identity(dev: u64, ino: u64, size: i64, m: (i64, i64), c: (i64, i64)) -> String {
    format!("{dev}:{ino}:{size}:{}.{}:{}.{}", m.0, m.1, c.0, c.1)
}

/// The part of the verdict cache key that names the signature file beside the
/// library `name` in `dir`, from one `fstatat` (not following a symlink) without
/// opening or reading it: what a warm run costs per library it does not load.
// The `stat` field types differ between architectures: the casts are needed on some.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat_key(dir: &std::fs::File, name: &OsStr) -> String {
    use rustix::fs::{AtFlags, FileType};
    match rustix::fs::statat(
        dir,
        signature_name(name).as_os_str(),
        AtFlags::SYMLINK_NOFOLLOW,
    ) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::RegularFile => identity(
            st.st_dev as u64,
            st.st_ino as u64,
            st.st_size as i64,
            (st.st_mtime as i64, st.st_mtime_nsec as i64),
            (st.st_ctime as i64, st.st_ctime_nsec as i64),
        ),
        Ok(_) => "not-regular".into(),
        Err(Errno::NOENT) => "none".into(),
        Err(e) => format!("error:{e}"),
    }
}

impl SigFile {
    /// Reads `<name>.minisig` in `dir` (whose path is `dir_path`): opened relative to
    /// the directory without following a symlink or blocking, a regular file of at
    /// most [`MAX_SIGNATURE_FILE`] bytes.
    pub(crate) fn read(dir: &std::fs::File, name: &OsStr, lib_path: &Path) -> SigFile {
        let sig_name = signature_name(name);
        let sig_path = lib_path.with_file_name(&sig_name);
        let s = shown(&sig_path);
        let file = match sys::open_in_dir(dir, &sig_name) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return SigFile::Missing,
            Err(e) if e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) => {
                return SigFile::Bad(format!(
                    "signature {s} is a symlink; install the signature file itself"
                ))
            }
            Err(e) if e.raw_os_error() == Some(Errno::NXIO.raw_os_error()) => {
                return SigFile::Bad(format!(
                    "signature {s} is a socket or device, not a regular file; replace it with \
                     the vendor's .minisig"
                ))
            }
            Err(e) => return SigFile::Bad(format!("cannot open signature {s}: {e}")),
        };
        let meta = match file.metadata() {
            Ok(m) => m,
            Err(e) => return SigFile::Bad(format!("cannot stat signature {s}: {e}")),
        };
        if !meta.file_type().is_file() {
            let kind =
                crate::input::special_file_kind(meta.file_type()).unwrap_or("not a regular file");
            return SigFile::Bad(format!(
                "signature {s} is {kind}, not a regular file; replace it with the vendor's \
                 .minisig"
            ));
        }
        if meta.len() > MAX_SIGNATURE_FILE {
            return SigFile::Bad(format!(
                "signature {s} is {} bytes, more than the limit of {MAX_SIGNATURE_FILE} bytes; \
                 it is not a minisign signature: replace it with the vendor's .minisig",
                meta.len()
            ));
        }
        // Sized from fstat: one read() for the whole file, and one to see its end.
        let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
        if let Err(e) = file.take(MAX_SIGNATURE_FILE + 1).read_to_end(&mut bytes) {
            return SigFile::Bad(format!("cannot read signature {s}: {e}"));
        }
        if bytes.len() as u64 > MAX_SIGNATURE_FILE {
            return SigFile::Bad(format!(
                "signature {s} grew past {MAX_SIGNATURE_FILE} bytes while read; replace it"
            ));
        }
        use std::os::unix::fs::MetadataExt;
        let id = identity(
            meta.dev(),
            meta.ino(),
            meta.size() as i64,
            (meta.mtime(), meta.mtime_nsec()),
            (meta.ctime(), meta.ctime_nsec()),
        );
        SigFile::Bytes(bytes, id)
    }

    /// The part of the verdict cache key that names this signature file, as
    /// [`stat_key`] gives it for an unchanged file.
    pub(crate) fn key_part(&self) -> String {
        match self {
            SigFile::Missing => "none".into(),
            SigFile::Bytes(_, id) => id.clone(),
            SigFile::Bad(_) => "bad".into(),
        }
    }
}

/// What the verdict cache binds a verdict to: the mode, the trust store and the
/// signature file's identity (`sig`, from [`stat_key`] or [`SigFile::key_part`]).
pub(crate) fn cache_key(store: &TrustStore, sig: &str) -> String {
    format!("{}:{}:{sig}", store.mode.as_str(), store.fingerprint)
}

/// The cache key when signatures are off.
pub(crate) const OFF_KEY: &str = "off";

/// The trusted comment's fields.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Bound<'a> {
    pub(crate) file: Option<&'a str>,
    pub(crate) interface: Option<&'a str>,
    pub(crate) name: Option<&'a str>,
}

/// Splits a trusted comment into its fields (space- or tab-separated; `name:` runs to
/// the end of the line).
pub(crate) fn fields(comment: &str) -> Bound<'_> {
    let mut bound = Bound::default();
    let mut rest = comment.trim_start();
    while !rest.is_empty() {
        if let Some(name) = rest.strip_prefix("name:") {
            bound.name = Some(name.trim_end());
            break;
        }
        let end = rest.find([' ', '\t']).unwrap_or(rest.len());
        let word = &rest[..end];
        if let Some(f) = word.strip_prefix("file:") {
            bound.file = Some(f);
        } else if let Some(i) = word.strip_prefix("interface:") {
            bound.interface = Some(i);
        }
        rest = rest[end..].trim_start();
    }
    bound
}

/// A failed check: what kind, and the one-line message.
type Problem = (RefusalKind, String);

/// The BLAKE2b-512 of a library's sealed copy, the hash a prehashed signature (minisign's
/// default) covers: computed on a thread of its own as the copy is made
/// ([`Prehash::follow`]), while the rest of the checks run here (SHA-256 when needed,
/// reading the signature and the key, the ELF pre-check), and waited for only when the
/// signature is checked. The thread reads each byte of the new copy once it is written
/// (see [`CopyProgress`]), so the hash is still of the very bytes that are loaded.
/// Dropped unfinished (the library was refused first), it tells the thread to stop.
pub(crate) struct Prehash {
    /// The thread's result, sent as soon as it is computed: the thread then unmaps
    /// the copy and ends, and nothing waits for either.
    running: Option<std::sync::mpsc::Receiver<std::io::Result<(Digest, u64)>>>,
    stop: Arc<AtomicBool>,
    /// The copy the thread follows, to wake it when told to stop.
    progress: Option<Arc<CopyProgress>>,
}

/// A BLAKE2b-512 hash.
type Digest = [u8; 64];

impl Prehash {
    /// Nothing started: the hash, if needed, is computed when the signature is checked.
    pub(crate) fn none() -> Prehash {
        Prehash {
            running: None,
            stop: Default::default(),
            progress: None,
        }
    }

    /// Whether a thread is computing the hash (still, or done and its result not yet
    /// taken).
    pub(crate) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether `sig` is a prehashed signature to check, whose BLAKE2b is then worth
    /// computing on a thread of its own while the library is copied and checked.
    pub(crate) fn wanted(sig: Option<&SigFile>) -> bool {
        let Some(SigFile::Bytes(bytes, _)) = sig else {
            return false;
        };
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| signature_blob(text).ok())
            .is_some_and(|blob| blob.starts_with(b"ED"))
    }

    /// Starts hashing the sealed copy being made, as it is made: `fd` is a descriptor
    /// of its own for that `memfd`, `progress` how far the copy has got (see
    /// [`crate::image::CopyProgress`] for why the bytes hashed are the bytes loaded).
    pub(crate) fn follow(fd: std::fs::File, progress: Arc<CopyProgress>) -> Prehash {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let reading = Arc::clone(&progress);
        let (result, running) = std::sync::mpsc::sync_channel(1);
        let job = move || {
            let mapping = reading.map(&fd);
            let each = |f: &mut dyn FnMut(&[u8])| {
                each_chunk_as_copied(&fd, mapping.as_ref(), &reading, &stopped, f)
            };
            let hashed = blake2b(each, &stopped);
            let _ = result.send(hashed);
        };
        let spawned = std::thread::Builder::new()
            .name("blake2b".into())
            .spawn(job);
        let running = match spawned {
            Ok(thread) => {
                progress.set_reader(thread.thread().clone());
                Some(running)
            }
            Err(_) => None,
        };
        Prehash {
            running,
            stop,
            progress: Some(progress),
        }
    }

    /// The hash of `image`: the thread's (when it hashed exactly the bytes of
    /// `image`), or computed now.
    fn finish(mut self, image: &Image) -> std::io::Result<Digest> {
        match self.running.take().map(|r| r.recv()) {
            Some(Ok(Ok((digest, len)))) if len == image.len() => Ok(digest),
            Some(Ok(Err(e))) => Err(e),
            // None was started, the thread panicked (it does not) or hashed another
            // length (it cannot: it reads up to the sealed length): hash here.
            _ => blake2b(
                |f| image.each_chunk(f).map(|()| image.len()),
                &Default::default(),
            )
            .map(|(digest, _)| digest),
        }
    }
}

#[cfg(test)]
impl Prehash {
    /// [`Prehash::finish`], for tests elsewhere in the crate.
    pub(crate) fn finish_for_test(self, image: &Image) -> Digest {
        self.finish(image).expect("hashed")
    }
}

impl Drop for Prehash {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(progress) = &self.progress {
            progress.wake();
        }
    }
}

/// BLAKE2b-512 of the bytes `each` feeds, and how many it said it fed, with
/// blake2b_simd (its AVX2 code where the CPU has it: about 10% faster than the
/// portable `blake2` crate at best and steadier, and far faster than minisign-verify's
/// own); gives up when `stop` is set.
fn blake2b(
    each: impl FnOnce(&mut dyn FnMut(&[u8])) -> std::io::Result<u64>,
    stop: &AtomicBool,
) -> std::io::Result<(Digest, u64)> {
    let mut hasher = blake2b_simd::Params::new().hash_length(64).to_state();
    let mut stopped = false;
    let len = each(&mut |chunk| {
        stopped = stopped || stop.load(Ordering::Relaxed);
        if !stopped {
            hasher.update(chunk);
        }
    })?;
    if stopped {
        return Err(std::io::Error::other(format!(
            "hashing the {len} bytes was stopped"
        )));
    }
    let mut digest = [0u8; 64];
    digest.copy_from_slice(hasher.finalize().as_bytes());
    Ok((digest, len))
}

/// The signature line (the second) of a `.minisig`, decoded.
fn signature_blob(text: &str) -> Result<Vec<u8>, ()> {
    use base64::Engine;
    let line = text.lines().nth(1).ok_or(())?;
    base64::engine::general_purpose::STANDARD
        .decode(line.trim())
        .map_err(|_| ())
}

/// Checks `image` (the sealed copy of the library `name` at `path`) against its
/// signature file `sig`, the trust store and the revocation list; `prehash` is the
/// BLAKE2b of `image` when started early ([`Prehash::start`]). `facts` gets the
/// library's SHA-256 when the revocation list needs it and it was not computed yet.
/// `Ok` is a valid signature from a trusted key binding this file; `Err` why not.
pub(crate) fn verify(
    image: &Image,
    name: &OsStr,
    path: &Path,
    sig: &SigFile,
    store: &TrustStore,
    facts: &mut Option<FileFacts>,
    prehash: Prehash,
) -> Result<SignatureFacts, (SignatureFacts, Problem)> {
    let mut out = SignatureFacts {
        state: SignatureState::Refused,
        key_id: None,
        trusted_comment: None,
        reason: None,
    };
    let fail = |mut out: SignatureFacts, (kind, message): Problem| {
        out.reason = Some(message.clone());
        Err((out, (kind, message)))
    };
    // A revoked build never loads, signed or not.
    if let Err(problem) = check_revoked_build(image, path, store, facts) {
        return fail(out, problem);
    }
    let (text, signature, id) = match decode(name, path, sig) {
        Ok(decoded) => decoded,
        Err((state, problem)) => {
            out.state = state;
            return fail(out, problem);
        }
    };
    out.key_id = Some(key_id_text(id));
    out.trusted_comment = Some(signature.trusted_comment().to_string());
    let key = match trusted_key(store, id, path) {
        Ok(key) => key,
        Err(problem) => return fail(out, problem),
    };
    // The bytes: the sealed copy that is loaded afterwards.
    if let Err(e) = verify_bytes(image, &key.key, &signature, text, prehash) {
        let (p, s) = (shown(path), signature_path(path));
        return fail(
            out,
            (
                RefusalKind::BadSignature,
                format!(
                    "{p} does not match its signature {s} ({e}): it was changed after \
                     signing, or the signature belongs to another build; reinstall both from \
                     the vendor"
                ),
            ),
        );
    }
    let bound = fields(signature.trusted_comment());
    if let Err(problem) = check_file_binding(name, path, signature.trusted_comment(), &bound)
        .and_then(|()| check_name_limit(key, id, path, &bound))
    {
        return fail(out, problem);
    }
    out.state = SignatureState::Signed;
    Ok(out)
}

/// The revocation list's build rule: `Err` when the SHA-256 of `image` is revoked
/// (computed only when the list names builds, and recorded in `facts`).
fn check_revoked_build(
    image: &Image,
    path: &Path,
    store: &TrustStore,
    facts: &mut Option<FileFacts>,
) -> Result<(), Problem> {
    if store.revoked_sha256.is_empty() {
        return Ok(());
    }
    let p = shown(path);
    let sha256 = match facts.as_ref().and_then(|f| f.sha256.clone()) {
        Some(h) => h,
        None => {
            let h = image
                .sha256()
                .map_err(|e| (RefusalKind::Unreadable, format!("cannot read {p}: {e}")))?;
            if let Some(f) = facts.as_mut() {
                f.sha256 = Some(h.clone());
            }
            h
        }
    };
    if store.revoked_sha256.contains(&sha256) {
        return Err((
            RefusalKind::RevokedBuild,
            format!(
                "{p} is a revoked build (sha256 {sha256} is in the revocation list); install \
                 a newer build from its vendor"
            ),
        ));
    }
    Ok(())
}

/// `<path>.minisig`, shown.
fn signature_path(path: &Path) -> String {
    format!("{}{SIGNATURE_SUFFIX}", shown(path))
}

/// The signature file's text, its decoded signature and the id of the key that made
/// it; or the state to report (unsigned, refused) and why not.
fn decode<'s>(
    name: &OsStr,
    path: &Path,
    sig: &'s SigFile,
) -> Result<(&'s str, minisign_verify::Signature, u64), (SignatureState, Problem)> {
    let bytes = match sig {
        SigFile::Missing => {
            let sig_name = format!("{}{SIGNATURE_SUFFIX}", printable(&name.to_string_lossy()));
            return Err((
                SignatureState::Unsigned,
                (
                    RefusalKind::Unsigned,
                    format!(
                        "{} is not signed (no {sig_name} beside it); install the vendor's \
                         signature with it, or set plugin.provtarget.signatures = warn",
                        shown(path)
                    ),
                ),
            ));
        }
        SigFile::Bad(reason) => {
            return Err((
                SignatureState::Refused,
                (RefusalKind::BadSignature, reason.clone()),
            ))
        }
        SigFile::Bytes(b, _) => b,
    };
    let garbage = || {
        let message = format!(
            "signature {} is not a minisign signature; replace it with the one the vendor \
             made with `minisign -S`",
            signature_path(path)
        );
        (
            SignatureState::Refused,
            (RefusalKind::BadSignature, message),
        )
    };
    let text = std::str::from_utf8(bytes).map_err(|_| garbage())?;
    let signature = minisign_verify::Signature::decode(text).map_err(|_| garbage())?;
    let id = text
        .lines()
        .nth(1)
        .and_then(key_id_of)
        .ok_or_else(garbage)?;
    Ok((text, signature, id))
}

/// The trusted key `id`, unless it is revoked, the store trusts nothing or it is not
/// trusted.
fn trusted_key<'t>(store: &'t TrustStore, id: u64, path: &Path) -> Result<&'t TrustedKey, Problem> {
    let (p, id_text) = (shown(path), key_id_text(id));
    if store.revoked_keys.contains(&id) {
        return Err((
            RefusalKind::RevokedKey,
            format!(
                "{p} is signed by key {id_text}, which is revoked; install a build signed with \
                 the vendor's current key"
            ),
        ));
    }
    if let Some(problem) = &store.unusable {
        return Err((
            RefusalKind::UntrustedKey,
            format!("{p} is signed by key {id_text}, but {problem}"),
        ));
    }
    store.key(id).ok_or_else(|| {
        (
            RefusalKind::UntrustedKey,
            format!(
                "{p} is signed by key {id_text}, which is not trusted; install that vendor's \
                 public key in the trusted-keys directory if you trust it"
            ),
        )
    })
}

/// The `file:` field must name the library's own file name.
fn check_file_binding(
    name: &OsStr,
    path: &Path,
    comment: &str,
    bound: &Bound<'_>,
) -> Result<(), Problem> {
    let file_name = name.to_string_lossy();
    match bound.file {
        None => Err((
            RefusalKind::SignatureMismatch,
            format!(
                "signature {} does not name the file it signs (no file: field in its trusted \
                 comment \"{}\"); sign with -t \"file:{} ...\"",
                signature_path(path),
                printable(comment),
                printable(&file_name)
            ),
        )),
        Some(f) if f.as_bytes() != name.as_bytes() => Err((
            RefusalKind::SignatureMismatch,
            format!(
                "{} is signed as {} (the signature's file: field), not as {}: a renamed \
                 library or a signature moved to another file; install it under its signed \
                 name",
                shown(path),
                printable(f),
                printable(&file_name)
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// A key limited to plugin names may only sign a signature whose `name:` field it
/// allows.
fn check_name_limit(
    key: &TrustedKey,
    id: u64,
    path: &Path,
    bound: &Bound<'_>,
) -> Result<(), Problem> {
    if key.names.is_empty() {
        return Ok(());
    }
    let (p, id_text) = (shown(path), key_id_text(id));
    let (file, names) = (printable(&key.file), printable(&key.names.join(", ")));
    match bound.name {
        None => Err((
            RefusalKind::NameNotAllowed,
            format!(
                "{p} is signed by key {id_text} ({file}), which may only sign plugins named \
                 {names}, but its signature names no plugin (no name: field)"
            ),
        )),
        Some(n) if !key.allows(n) => Err((
            RefusalKind::NameNotAllowed,
            format!(
                "{p} is signed for plugin \"{}\" by key {id_text} ({file}), which may only \
                 sign plugins named {names}",
                printable(n)
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Verifies the image's bytes. A prehashed signature (minisign's default) is an
/// Ed25519 signature over the BLAKE2b-512 hash of the file: the hash is `prehash`'s
/// (see [`Prehash`]), and minisign-verify checks both Ed25519 signatures over it,
/// given the signature re-labelled as one over those 64 bytes (the algorithm label is
/// not covered by either signature). A legacy signature covers the bytes themselves,
/// read whole.
fn verify_bytes(
    image: &Image,
    key: &minisign_verify::PublicKey,
    signature: &minisign_verify::Signature,
    text: &str,
    prehash: Prehash,
) -> Result<(), String> {
    match prehashed_as_legacy(text) {
        Some(relabelled) => {
            let hash = prehash.finish(image).map_err(|e| e.to_string())?;
            key.verify(&hash, &relabelled, true)
                .map_err(|e| e.to_string())
        }
        None => {
            drop(prehash);
            let bytes = image.bytes().map_err(|e| e.to_string())?;
            key.verify(&bytes, signature, true)
                .map_err(|e| e.to_string())
        }
    }
}

/// For a prehashed signature (`ED`), the same signature labelled legacy (`Ed`), so
/// that minisign-verify checks it over a hash given to it; `None` for a legacy one.
fn prehashed_as_legacy(text: &str) -> Option<minisign_verify::Signature> {
    use base64::Engine;
    let mut blob = signature_blob(text).ok()?;
    if blob.get(..2)? != b"ED" {
        return None;
    }
    blob[1] = b'd';
    let encoded = base64::engine::general_purpose::STANDARD.encode(&blob);
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = &encoded;
    minisign_verify::Signature::decode(&lines.join("\n")).ok()
}

/// The checks that need the loaded library's own facts: the signature's `name:` and
/// `interface:` fields against what the library says. `None` when they hold (or the
/// library is not signed).
pub(crate) fn check_loaded(
    sig: &SignatureFacts,
    plugin: &PluginFacts,
    path: &Path,
) -> Option<Problem> {
    if sig.state != SignatureState::Signed {
        return None;
    }
    let comment = sig.trusted_comment.as_deref()?;
    let bound = fields(comment);
    let p = shown(path);
    if let Some(name) = bound.name {
        if name != plugin.info.name {
            return Some((
                RefusalKind::SignatureMismatch,
                format!(
                    "{p} is signed for plugin \"{}\" but calls itself \"{}\"; install the build \
                     the signature was made for",
                    printable(name),
                    printable(&plugin.info.name)
                ),
            ));
        }
    }
    if let Some(want) = bound.interface {
        let have = &plugin.interface_version;
        let major_minor: String = have.split('.').take(2).collect::<Vec<_>>().join(".");
        if want != major_minor && want != have {
            return Some((
                RefusalKind::SignatureMismatch,
                format!(
                    "{p} is signed for interface {} but is built against interface {}; \
                     install the build the signature was made for",
                    printable(want),
                    printable(have)
                ),
            ));
        }
    }
    None
}

/// Applies a failed check to `record` under `mode`: in `enforce` (and always for a
/// revoked key or build) a refusal; in `warn` the record says so and one warning is
/// logged.
pub(crate) fn judge(
    mode: SignatureMode,
    record: &mut LibraryRecord,
    mut facts: SignatureFacts,
    (kind, message): Problem,
) -> Result<(), Refusal> {
    let revoked = matches!(kind, RefusalKind::RevokedKey | RefusalKind::RevokedBuild);
    if facts.state == SignatureState::Signed {
        facts.state = SignatureState::Refused;
        facts.reason = Some(message.clone());
    }
    record.signature = Some(facts);
    if mode == SignatureMode::Enforce || revoked {
        return Err(Refusal::new(Stage::Signature, kind, message));
    }
    warn_loaded(record);
    Ok(())
}

/// The one log line of a library loaded in `warn` mode without a valid signature.
pub(crate) fn warn_loaded(record: &LibraryRecord) {
    if let Some(sig) = &record.signature {
        if matches!(
            sig.state,
            SignatureState::Unsigned | SignatureState::Refused
        ) {
            tracing::warn!(
                path = %shown(&record.path),
                "loading plugin library without a valid signature (signatures = warn): {}",
                printable(sig.reason.as_deref().unwrap_or(""))
            );
        }
    }
}

/// The signature facts for `signatures = off`.
pub(crate) fn off() -> SignatureFacts {
    SignatureFacts::off()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_comment_fields_and_names_with_spaces() {
        let b = fields("file:libacme.so interface:1.1 name:Acme DC hints Provisioning Target ");
        assert_eq!(
            b,
            Bound {
                file: Some("libacme.so"),
                interface: Some("1.1"),
                name: Some("Acme DC hints Provisioning Target"),
            }
        );
        // minisign's default comment: tab-separated, a timestamp.
        let b = fields("timestamp:1796646201\tfile:libacme.so");
        assert_eq!(
            (b.file, b.interface, b.name),
            (Some("libacme.so"), None, None)
        );
        // `name:` is last: a `file:` after it is part of the name.
        let b = fields("name:x file:y");
        assert_eq!((b.file, b.name), (None, Some("x file:y")));
        assert_eq!(fields(""), Bound::default());
    }

    /// A `.minisig` text whose signature line carries the algorithm `alg` (the rest is
    /// made up: only the label decides whether a hash is started).
    fn minisig_labelled(alg: &[u8; 2]) -> SigFile {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut blob = alg.to_vec();
        blob.extend([7u8; 8 + 64]);
        let text = format!(
            "untrusted comment: x\n{}\ntrusted comment: file:x\n{}\n",
            b64.encode(&blob),
            b64.encode([9u8; 64])
        );
        SigFile::Bytes(text.into_bytes(), "id".into())
    }

    #[test]
    fn the_early_hash_is_the_blake2b_of_the_sealed_copy() {
        let source = provtarget_testsupport::cdylib("provtarget-testkit");
        let bytes = std::fs::read(&source).unwrap();
        let len = bytes.len() as u64;
        let charge = crate::image::Charge::reserve(len).unwrap();
        // Hashed on a thread of its own as the sealed copy is made.
        let mut prehash = Prehash::none();
        let mut follow = |fd, progress| prehash = Prehash::follow(fd, progress);
        let image = Image::read(
            std::fs::File::open(&source).unwrap(),
            len,
            &source,
            charge,
            Some(&mut follow),
        )
        .expect("sealed copy");
        assert!(image.is_sealed());
        let want = blake2b_simd::Params::new().hash_length(64).hash(&bytes);
        let want = want.as_bytes();
        assert!(prehash.running.is_some(), "no thread started");
        assert_eq!(prehash.finish(&image).unwrap().as_slice(), want);
        // Only a prehashed signature wants it: a legacy one covers the bytes themselves.
        assert!(Prehash::wanted(Some(&minisig_labelled(b"ED"))));
        for sig in [
            Some(&minisig_labelled(b"Ed")),
            Some(&SigFile::Missing),
            None,
        ] {
            assert!(!Prehash::wanted(sig));
        }
        // Without an early start the hash is computed when asked, the same.
        assert_eq!(Prehash::none().finish(&image).unwrap().as_slice(), want);
        // Stopped (the library was refused first): no hash comes out of it.
        let stop = AtomicBool::new(true);
        assert!(blake2b(|f| image.each_chunk(f).map(|()| len), &stop).is_err());
    }

    #[test]
    fn a_copy_that_fails_ends_the_thread_following_it() {
        // A descriptor that cannot be read: the copy fails after the thread started.
        let dir = provtarget_testsupport::TempDir::new("prehash");
        let path = dir.path().join("libwrite-only.so");
        std::fs::write(&path, vec![7u8; 300 << 10]).unwrap();
        let write_only = std::fs::File::options().write(true).open(&path).unwrap();
        let charge = crate::image::Charge::reserve(300 << 10).unwrap();
        let mut prehash = Prehash::none();
        let mut follow = |fd, progress| prehash = Prehash::follow(fd, progress);
        let read = Image::read(write_only, 300 << 10, &path, charge, Some(&mut follow));
        assert!(read.is_err(), "a write-only descriptor was read");
        let thread = prehash.running.take().expect("the thread was started");
        let ended = thread.recv().expect("the thread sends its result");
        let e = ended.expect_err("a hash came out of a failed copy");
        assert!(e.to_string().contains("not completed"), "{e}");
    }

    #[test]
    fn dropping_the_prehash_stops_a_thread_waiting_for_the_copy() {
        // The thread waits for bytes that never come until it is told to stop.
        let dir = provtarget_testsupport::TempDir::new("prehash");
        let memfd = crate::sys::memfd_named_after(&dir.path().join("libwaiting.so")).unwrap();
        let progress = std::sync::Arc::new(crate::image::CopyProgress::new(1 << 20));
        let prehash = Prehash::follow(memfd, progress.clone());
        let thread = {
            let mut prehash = prehash;
            let thread = prehash.running.take().unwrap();
            drop(prehash);
            thread
        };
        let ended = thread.recv().expect("the thread sends its result");
        assert!(ended.is_err(), "a hash came out of an empty copy");
    }

    #[test]
    fn facts_round_trip_through_json() {
        let facts = SignatureFacts {
            state: SignatureState::Refused,
            key_id: Some("CAED6FCE3B129E7B".into()),
            trusted_comment: Some("file:a.so".into()),
            reason: Some("why".into()),
        };
        assert_eq!(SignatureFacts::from_json(&facts.to_json()), Some(facts));
        assert_eq!(
            SignatureFacts::from_json(&serde_json::json!({"state": "x"})),
            None
        );
        assert_eq!(off().summary(), "not checked (signatures = off)");
    }
}
