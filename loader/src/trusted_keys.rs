//! The trust store for signed plugins: the minisign public keys in the trusted-keys
//! directory and the revocation list, read once per load run.
//!
//! **Keys.** Every `*.pub` file directly in the directory
//! ([`SignaturePolicy::trusted_keys`], default [`DEFAULT_TRUSTED_KEYS`]) is a public
//! key as `minisign -G` writes it: an `untrusted comment:` line, then the key in
//! base64. Lines after those two may limit the key to plugin names, one
//! `name: <pattern>` line each (`*` matches any run of characters, everything else
//! itself, case-sensitively, against the whole plugin name); a key without such lines
//! may sign any plugin. Blank lines and lines starting with `#` are ignored; any other
//! line makes that key file unusable (a warning), so a typo never widens a limit.
//! The directory and every key file are held to the plugin rules: opened without
//! following a symlink or blocking, regular files, owned by root or the host's user,
//! neither group- nor world-writable. A directory that fails the rule trusts no key.
//!
//! **Revocations** ([`SignaturePolicy::revoked`]): a file of lines `key <key id>`
//! (the up to 16 hex digits minisign prints) and `sha256 <64 hex digits>` (a library
//! build), with `#` comments, blank lines, a byte order mark and trailing spaces or
//! `\r` tolerated. Any other line makes the file unusable, and then no library
//! loads while signatures are checked (a list that silently dropped a line would
//! revoke less than its author thinks). Same owner/mode rule as the pin file.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::{
    directory::{self, DirError},
    input::InputError,
    sys,
    text::shown,
    trust,
};

/// Where operators install the public keys of the vendors they trust.
pub const DEFAULT_TRUSTED_KEYS: &str = "/etc/choria/provtarget/trusted.d";

/// A key file larger than this is refused (a minisign public key is 2 lines, ~100
/// bytes).
const MAX_KEY_FILE: u64 = 64 << 10;

/// A revocation list larger than this is refused.
const MAX_REVOKED_FILE: u64 = 1 << 20;

/// How strictly library signatures are checked (`plugin.provtarget.signatures`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SignatureMode {
    /// Signatures are not read.
    Off,
    /// Every library's signature is checked and reported; a library without a valid
    /// signature from a trusted key still loads, with a warning (revoked keys and
    /// builds never load).
    Warn,
    /// Only libraries with a valid signature from a trusted key load.
    Enforce,
}

impl SignatureMode {
    /// `off`, `warn` or `enforce`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Off => "off",
            SignatureMode::Warn => "warn",
            SignatureMode::Enforce => "enforce",
        }
    }

    /// The mode named `text` (ASCII case and surrounding spaces ignored), or a
    /// one-line reason.
    pub fn parse(text: &str) -> Result<SignatureMode, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SignatureMode::Off),
            "warn" => Ok(SignatureMode::Warn),
            "enforce" => Ok(SignatureMode::Enforce),
            _ => Err("use off, warn or enforce".into()),
        }
    }
}

/// What the loader does about signatures: the mode and where the keys and the
/// revocation list are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignaturePolicy {
    /// `None`: automatic, `off` while the trusted-keys directory holds no `*.pub`
    /// file (an operator who set up no keys sees nothing new), `warn` once it does.
    pub mode: Option<SignatureMode>,
    /// The directory of trusted minisign public keys (`*.pub`).
    pub trusted_keys: PathBuf,
    /// The revocation list, if any.
    pub revoked: Option<PathBuf>,
}

impl Default for SignaturePolicy {
    fn default() -> Self {
        SignaturePolicy {
            mode: None,
            trusted_keys: PathBuf::from(DEFAULT_TRUSTED_KEYS),
            revoked: None,
        }
    }
}

/// One trusted public key.
pub(crate) struct TrustedKey {
    /// The key id as minisign prints it (upper-case hex).
    pub(crate) id: String,
    /// The key file's name, for messages.
    pub(crate) file: String,
    pub(crate) key: minisign_verify::PublicKey,
    /// The key as the file spells it (base64), for the store's fingerprint.
    pub(crate) encoded: String,
    /// The plugin-name patterns it may sign; empty: any.
    pub(crate) names: Vec<String>,
}

impl TrustedKey {
    /// Whether this key may sign the plugin `name`.
    pub(crate) fn allows(&self, name: &str) -> bool {
        self.names.is_empty() || self.names.iter().any(|p| glob(p, name))
    }
}

/// The keys, revocations and effective mode of one load run.
pub(crate) struct TrustStore {
    pub(crate) mode: SignatureMode,
    pub(crate) keys: Vec<TrustedKey>,
    pub(crate) revoked_keys: BTreeSet<u64>,
    pub(crate) revoked_sha256: BTreeSet<String>,
    /// Why no key at all can be trusted (directory missing or untrusted, revocation
    /// list unusable): every signature check fails with it.
    pub(crate) unusable: Option<String>,
    /// A digest of everything above, for the verdict cache: a change of key, limit,
    /// revocation or mode never reuses a verdict.
    pub(crate) fingerprint: String,
}

impl TrustStore {
    /// Reads the store `policy` describes, for a host running as `euid`; also returns
    /// the warnings to report (unusable key files, a store that trusts nothing).
    pub(crate) fn load(
        policy: &SignaturePolicy,
        euid: u32,
        skip_owner: bool,
    ) -> (TrustStore, Vec<String>) {
        let mut warnings = Vec::new();
        let mut store = TrustStore {
            mode: policy.mode.unwrap_or(SignatureMode::Off),
            keys: Vec::new(),
            revoked_keys: BTreeSet::new(),
            revoked_sha256: BTreeSet::new(),
            unusable: None,
            fingerprint: String::new(),
        };
        if policy.mode == Some(SignatureMode::Off) {
            store.fingerprint = "off".into();
            return (store, warnings);
        }
        store.read_keys(policy, euid, skip_owner, &mut warnings);
        if store.mode == SignatureMode::Off {
            store.fingerprint = "off".into();
            return (store, warnings);
        }
        if let Some(path) = &policy.revoked {
            match read_revoked(path, euid, skip_owner) {
                Ok((keys, hashes)) => {
                    store.revoked_keys = keys;
                    store.revoked_sha256 = hashes;
                }
                Err(problem) => {
                    store.unusable = Some(format!(
                        "{problem}; signatures cannot be trusted until it is fixed"
                    ));
                }
            }
        }
        if let Some(problem) = &store.unusable {
            warnings.push(format!("signatures = {}: {problem}", store.mode.as_str()));
        }
        store.fingerprint = store.digest();
        (store, warnings)
    }

    /// The keys in the trusted-keys directory (and the automatic mode, which depends on
    /// whether it holds any); a directory that cannot be used trusts no key.
    fn read_keys(
        &mut self,
        policy: &SignaturePolicy,
        euid: u32,
        skip_owner: bool,
        warnings: &mut Vec<String>,
    ) {
        let d = shown(&policy.trusted_keys);
        let fix = format!(
            "install the vendors' minisign public keys (*.pub) in {d}, a directory owned by \
             root with mode 0755"
        );
        let dir = match directory::open(&policy.trusted_keys, true) {
            Ok(dir) => dir,
            Err(DirError::Missing) => {
                self.unusable = Some(format!(
                    "no key is trusted: the trusted-keys directory {d} does not exist ({fix})"
                ));
                return;
            }
            Err(DirError::Unusable { reason, .. }) => {
                self.unusable = Some(format!("no key is trusted: {reason}"));
                if policy.mode.is_none() {
                    self.mode = SignatureMode::Warn;
                }
                return;
            }
        };
        let names = crate::discover::list(&dir).unwrap_or_default();
        let mut pubs: Vec<_> = names
            .into_iter()
            .filter(|n| n.as_bytes().ends_with(b".pub") && !n.as_bytes().starts_with(b"."))
            .collect();
        pubs.sort();
        if policy.mode.is_none() && !pubs.is_empty() {
            self.mode = SignatureMode::Warn;
        }
        let problem = (!skip_owner)
            .then(|| dir.file.metadata().ok())
            .flatten()
            .and_then(|m| trust::owner_mode_problem(&m, &dir.path, "trusted-keys directory", euid));
        if let Some((_, problem)) = problem {
            self.unusable = Some(format!("no key is trusted: {problem}"));
            return;
        }
        for name in &pubs {
            match read_key(&dir.file, name, &dir.path.join(name), euid, skip_owner) {
                Ok(key) => self.keys.push(key),
                Err(w) => warnings.push(w),
            }
        }
        if self.keys.is_empty() {
            self.unusable = Some(format!(
                "no key is trusted: the trusted-keys directory {d} holds no usable key ({fix})"
            ));
        }
    }

    fn digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.mode.as_str());
        h.update([0]);
        h.update(self.unusable.as_deref().unwrap_or(""));
        for k in &self.keys {
            h.update([1]);
            h.update(&k.id);
            h.update([0]);
            h.update(k.encoded.as_bytes());
            for n in &k.names {
                h.update([2]);
                h.update(n.as_bytes());
            }
        }
        for k in &self.revoked_keys {
            h.update([3]);
            h.update(k.to_le_bytes());
        }
        for s in &self.revoked_sha256 {
            h.update([4]);
            h.update(s.as_bytes());
        }
        let digest = h.finalize();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The trusted key whose id is `id`.
    pub(crate) fn key(&self, id: u64) -> Option<&TrustedKey> {
        let text = key_id_text(id);
        self.keys.iter().find(|k| k.id == text)
    }
}

/// A key id as minisign prints it: the 8 id bytes as a little-endian number, in
/// upper-case hex without leading zeros (`minisign public key 55FF3CCB95A144F`).
pub(crate) fn key_id_text(id: u64) -> String {
    format!("{id:X}")
}

/// The key id (little-endian) in a minisign key or signature blob (algorithm, then
/// the 8 id bytes).
pub(crate) fn key_id_of(blob_b64: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob_b64.trim())
        .ok()?;
    let id: [u8; 8] = bytes.get(2..10)?.try_into().ok()?;
    Some(u64::from_le_bytes(id))
}

/// The trusted key in the file `name` of the trusted-keys directory `dir` (`path`
/// names it in messages), or the one-line warning saying why it is not used.
fn read_key(
    dir: &std::fs::File,
    name: &OsStr,
    path: &Path,
    euid: u32,
    skip_owner: bool,
) -> Result<TrustedKey, String> {
    let p = shown(path);
    let unusable = |why: String| format!("trusted key {p} is not used: {why}");
    let file = open_key_file(dir, name, path, euid, skip_owner, &unusable)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unusable(format!("cannot read it ({e})")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| unusable("it is not text; expected a minisign public key".into()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let (key, id, encoded, names) = parse_key(text, &unusable)?;
    Ok(TrustedKey {
        id: key_id_text(id),
        file: name.to_string_lossy().into_owned(),
        key,
        encoded,
        names,
    })
}

/// Opens a key file without following a symlink or blocking and holds it to the
/// plugin rules (a regular file, owner and mode, at most [`MAX_KEY_FILE`] bytes);
/// `unusable` words the warning.
fn open_key_file(
    dir: &std::fs::File,
    name: &OsStr,
    path: &Path,
    euid: u32,
    skip_owner: bool,
    unusable: &dyn Fn(String) -> String,
) -> Result<std::fs::File, String> {
    let file = sys::open_in_dir(dir, name).map_err(|e| {
        if e.raw_os_error() == Some(sys::Errno::LOOP.raw_os_error()) {
            unusable("it is a symlink; install the key file itself".into())
        } else {
            unusable(format!("cannot open it ({e})"))
        }
    })?;
    let meta = file
        .metadata()
        .map_err(|e| unusable(format!("cannot stat it ({e})")))?;
    if !meta.file_type().is_file() {
        let kind =
            crate::input::special_file_kind(meta.file_type()).unwrap_or("not a regular file");
        return Err(unusable(format!("it is {kind}, not a regular file")));
    }
    if !skip_owner {
        if let Some((_, problem)) = trust::owner_mode_problem(&meta, path, "trusted key", euid) {
            return Err(problem);
        }
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(unusable(format!(
            "it is {} bytes, more than the limit of {MAX_KEY_FILE} bytes; is it a minisign \
             public key?",
            meta.len()
        )));
    }
    Ok(file)
}

/// A key file's text: the key, its id, the key as written (base64) and its name
/// limits.
fn parse_key(
    text: &str,
    unusable: &dyn Fn(String) -> String,
) -> Result<(minisign_verify::PublicKey, u64, String, Vec<String>), String> {
    let mut lines = text.lines().map(|l| l.trim_end());
    let not_minisign = || {
        unusable(
            "it is not a minisign public key (an `untrusted comment:` line, then the key); \
             copy the vendor's .pub file as it is"
                .into(),
        )
    };
    let first = lines.next().ok_or_else(not_minisign)?;
    if !first.starts_with("untrusted comment:") {
        return Err(not_minisign());
    }
    let b64 = lines.next().ok_or_else(not_minisign)?.trim();
    let key = minisign_verify::PublicKey::from_base64(b64).map_err(|_| not_minisign())?;
    let id = key_id_of(b64).ok_or_else(not_minisign)?;
    let mut names = Vec::new();
    for (i, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.strip_prefix("name:") {
            Some(pattern) if !pattern.trim().is_empty() => names.push(pattern.trim().to_string()),
            _ => {
                return Err(unusable(format!(
                    "line {} is not `name: <plugin name pattern>`: `{}`; fix or remove it",
                    i + 3,
                    crate::text::printable(&line.chars().take(100).collect::<String>())
                )))
            }
        }
    }
    Ok((key, id, b64.to_string(), names))
}

fn read_revoked(
    path: &Path,
    euid: u32,
    skip_owner: bool,
) -> Result<(BTreeSet<u64>, BTreeSet<String>), String> {
    let p = shown(path);
    let input = crate::input::read_bounded(path, MAX_REVOKED_FILE).map_err(|e| match e {
        InputError::NotFound => {
            format!("revocation list {p} {e}; create it or fix plugin.provtarget.revoked")
        }
        _ => format!("revocation list {p} {e}; point plugin.provtarget.revoked at a list of `key <id>` and `sha256 <hex>` lines"),
    })?;
    if !skip_owner {
        if let Some((_, problem)) =
            trust::owner_mode_problem(&input.metadata, path, "revocation list", euid)
        {
            return Err(problem);
        }
    }
    parse_revoked(&p, &input.bytes)
}

/// Parses a revocation list; `p` names it in messages.
pub(crate) fn parse_revoked(
    p: &str,
    bytes: &[u8],
) -> Result<(BTreeSet<u64>, BTreeSet<String>), String> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut keys = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || {
            format!(
                "revocation list {p} line {} is not `key <key id, hex>` or `sha256 <64 hex \
                 digits>`: `{}`; fix or remove that line",
                i + 1,
                crate::text::printable(&line.chars().take(100).collect::<String>())
            )
        };
        let mut words = line.split_whitespace();
        let (what, value) = (words.next().unwrap_or(""), words.next().ok_or_else(bad)?);
        if words.next().is_some_and(|w| !w.starts_with('#')) {
            return Err(bad());
        }
        let hex = value.bytes().all(|b| b.is_ascii_hexdigit());
        match what.to_ascii_lowercase().as_str() {
            "key" if hex && (1..=16).contains(&value.len()) => {
                keys.insert(u64::from_str_radix(value, 16).map_err(|_| bad())?);
            }
            "sha256" if hex && value.len() == 64 => {
                hashes.insert(value.to_ascii_lowercase());
            }
            _ => return Err(bad()),
        }
    }
    Ok((keys, hashes))
}

/// `*` matches any run of characters (also none); everything else itself.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_read_as_minisign_prints_them() {
        // minisign -G wrote "minisign public key CAED6FCE3B129E7B" for this key.
        let b64 = "RWR7nhI7zm/tyjnfXUwk+w7OigWPi7omNNRuH1u07aD5V46coaEkhgyu";
        assert_eq!(
            key_id_of(b64).map(key_id_text).as_deref(),
            Some("CAED6FCE3B129E7B")
        );
        // No leading zeros, as minisign's %PRIX64.
        assert_eq!(key_id_text(0x055F_F3CC_B95A_144F), "55FF3CCB95A144F");
        assert_eq!(key_id_of("not base64"), None);
    }

    #[test]
    fn the_automatic_mode_and_unusable_key_files() {
        const KEY: &str = "untrusted comment: minisign public key CAED6FCE3B129E7B\n\
                           RWR7nhI7zm/tyjnfXUwk+w7OigWPi7omNNRuH1u07aD5V46coaEkhgyu\n";
        let tmp = provtarget_testsupport::TempDir::new("trusted-keys");
        let euid = crate::sys::effective_uid();
        let policy = |dir: &Path| SignaturePolicy {
            mode: None,
            trusted_keys: dir.to_path_buf(),
            revoked: None,
        };
        // Missing or empty: off, not a word.
        let (store, w) = TrustStore::load(&policy(&tmp.path().join("missing")), euid, false);
        assert_eq!((store.mode, w.len()), (SignatureMode::Off, 0));
        let (store, w) = TrustStore::load(&policy(tmp.path()), euid, false);
        assert_eq!((store.mode, w.len()), (SignatureMode::Off, 0));
        // One key: warn, and the key is trusted with its name limit.
        tmp.write("acme.pub", format!("{KEY}# vendor\nname: Acme *\n"));
        let (store, w) = TrustStore::load(&policy(tmp.path()), euid, false);
        assert_eq!((store.mode, w.len()), (SignatureMode::Warn, 0), "{w:?}");
        let key = store.key(0xCAED6FCE3B129E7B).expect("trusted");
        assert!(key.allows("Acme DC") && !key.allows("Evil"));
        let fingerprint = store.fingerprint.clone();
        // A typo in a limit makes that key unusable (never wider), said in one line.
        tmp.write("acme.pub", format!("{KEY}nmae: Acme *\n"));
        let (store, w) = TrustStore::load(&policy(tmp.path()), euid, false);
        assert!(store.keys.is_empty() && store.unusable.is_some());
        assert!(
            w[0].contains("acme.pub is not used: line 3 is not `name:"),
            "{w:?}"
        );
        assert!(w.iter().all(|w| !w.contains('\n')));
        assert_ne!(
            store.fingerprint, fingerprint,
            "the cache must see the change"
        );
        // Not a key at all.
        tmp.write("acme.pub", "hello\n");
        let (_, w) = TrustStore::load(&policy(tmp.path()), euid, false);
        assert!(w[0].contains("is not a minisign public key"), "{w:?}");
        // Explicitly off: the directory is not even looked at.
        let off = SignaturePolicy {
            mode: Some(SignatureMode::Off),
            ..policy(tmp.path())
        };
        let (store, w) = TrustStore::load(&off, euid, false);
        assert_eq!(
            (store.mode, w.len(), store.fingerprint.as_str()),
            (SignatureMode::Off, 0, "off")
        );
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("Acme *", "Acme DC hints Provisioning Target"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("Acme *", "Evil Acme thing"));
        assert!(!glob("Acme", "Acme DC"));
        assert!(glob("A?me", "A?me"));
        assert!(!glob("A?me", "Acme"));
    }

    #[test]
    fn revocation_lists_tolerate_bom_comments_and_spaces_but_not_typos() {
        let h = "AB".repeat(32);
        let text =
            format!("\u{feff}# revoked\n\nkey 7C0D8B5E9B2E3A4F  \r\nsha256 {h}\t# old build\n");
        let (keys, hashes) = parse_revoked("/r", text.as_bytes()).unwrap();
        assert!(keys.contains(&0x7C0D8B5E9B2E3A4F));
        assert!(hashes.contains(&h.to_ascii_lowercase()));
        for bad in [
            "key",
            "key xyz",
            "sha256 abc",
            "pin 00",
            &format!("sha256 {h} extra"),
        ] {
            let err = parse_revoked("/r", format!("key 01\n{bad}\n").as_bytes()).unwrap_err();
            assert!(
                err.contains("line 2") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }
}
