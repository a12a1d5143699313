//! Why the dynamic linker refused a library, decided from facts, never from the wording
//! of `dlerror()` (which differs between glibc, musl and versions):
//!
//! 1. the library's own tables ([`crate::elf::imports`]): its `DT_NEEDED` libraries,
//!    its search path and the symbols it imports (undefined, not weak);
//! 2. every needed library already loaded in this process (`RTLD_NOLOAD`): each
//!    import is looked up in the host's global scope and in those libraries; the ones
//!    found nowhere are [`Cause::Unresolved`];
//! 3. a needed library not loaded here is looked for where the dynamic linker looks
//!    (see [`installed`]); found nowhere, it is [`Cause::MissingLibraries`].
//!
//! Anything else is [`Cause::Unknown`], and the caller shows `dlerror`'s text.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use crate::sys::{self, LoadedLibrary};

/// Why `dlopen` refused a library, as far as the facts tell.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    /// Every needed library is loaded, and these imports (at least one) are defined
    /// neither in the host's global scope nor in any of them.
    Unresolved(Vec<String>),
    /// These needed libraries (at least one) are installed in none of the directories
    /// the dynamic linker searches.
    MissingLibraries(Vec<String>),
    /// None of the above: the dynamic linker's own message is all there is.
    Unknown,
}

/// Tells why `dlopen` of `file` (loaded as `load_path`) failed.
pub(crate) fn diagnose(file: &File, load_path: &Path) -> Cause {
    let Some(imports) = crate::elf::imports(&object::ReadCache::new(file)) else {
        return Cause::Unknown;
    };
    let mut loaded = Vec::new();
    let mut not_loaded = Vec::new();
    for name in &imports.needed {
        match LoadedLibrary::find(name) {
            Some(library) => loaded.push(library),
            None => not_loaded.push(name),
        }
    }
    if not_loaded.is_empty() {
        let unresolved = unresolved(&imports.symbols, &loaded);
        if unresolved.is_empty() {
            return Cause::Unknown;
        }
        return Cause::Unresolved(unresolved);
    }
    let origin = load_path.parent().unwrap_or(Path::new("/"));
    let directories = search_directories(&imports.search_path, origin);
    let missing: Vec<String> = not_loaded
        .into_iter()
        .filter(|name| !installed(name, &directories))
        .cloned()
        .collect();
    if missing.is_empty() {
        Cause::Unknown
    } else {
        Cause::MissingLibraries(missing)
    }
}

/// The `symbols` defined neither in the host's global scope nor in `libraries`.
fn unresolved(symbols: &[String], libraries: &[LoadedLibrary]) -> Vec<String> {
    symbols
        .iter()
        .filter(|symbol| {
            !sys::defined_globally(symbol) && !libraries.iter().any(|l| l.defines(symbol))
        })
        .cloned()
        .collect()
}

/// The directories the dynamic linker searches for a library's `DT_NEEDED` entries,
/// in its order: the library's `DT_RUNPATH`/`DT_RPATH` (`$ORIGIN` is the directory it
/// was loaded from: `/proc/self/fd` for a sealed copy; entries with other `$` tokens
/// are left out), `LD_LIBRARY_PATH`, the directories of every library this process has
/// loaded (the host's own, e.g. `/lib/x86_64-linux-gnu`), and the system defaults.
fn search_directories(search_path: &[String], origin: &Path) -> Vec<PathBuf> {
    let origin = origin.to_string_lossy();
    let mut directories: Vec<PathBuf> = search_path
        .iter()
        .map(|entry| {
            entry
                .replace("${ORIGIN}", &origin)
                .replace("$ORIGIN", &origin)
        })
        .filter(|entry| !entry.is_empty() && !entry.contains('$'))
        .map(PathBuf::from)
        .collect();
    if let Some(paths) = std::env::var_os("LD_LIBRARY_PATH") {
        directories.extend(std::env::split_paths(&paths).filter(|p| p.is_absolute()));
    }
    directories.extend(loaded_library_directories());
    directories
        .extend(["/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib"].map(PathBuf::from));
    directories
}

/// The directories of the files this process has mapped (its libraries), from
/// `/proc/self/maps` (empty where it cannot be read).
fn loaded_library_directories() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut directories: Vec<PathBuf> = Vec::new();
    for line in maps.lines() {
        let Some(path) = line
            .split_whitespace()
            .nth(5)
            .filter(|p| p.starts_with('/'))
        else {
            continue;
        };
        if let Some(dir) = Path::new(path).parent() {
            if !directories.iter().any(|d| d == dir) {
                directories.push(dir.to_path_buf());
            }
        }
    }
    directories
}

/// The system's list of installed libraries (glibc's `ldconfig` cache; absent on
/// musl, whose default directories [`search_directories`] covers).
const LD_SO_CACHE: &str = "/etc/ld.so.cache";

/// Whether the needed library `name` is installed where the dynamic linker would find
/// it: a name with a `/` is a path; a bare name is a file in one of `directories` or
/// an entry of the `ldconfig` cache (its names are NUL-terminated strings).
fn installed(name: &str, directories: &[PathBuf]) -> bool {
    if name.contains('/') {
        return Path::new(name).exists();
    }
    if directories.iter().any(|dir| dir.join(name).exists()) {
        return true;
    }
    let Ok(cache) = std::fs::read(LD_SO_CACHE) else {
        return false;
    };
    let entry = [b"\0", name.as_bytes(), b"\0"].concat();
    cache.windows(entry.len()).any(|w| w == entry.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_is_the_load_directory_and_other_tokens_are_left_out() {
        let dirs = search_directories(
            &[
                "$ORIGIN/lib".into(),
                "${ORIGIN}".into(),
                "$LIB/x".into(),
                "/opt/x".into(),
                String::new(),
            ],
            Path::new("/proc/self/fd"),
        );
        assert_eq!(
            &dirs[..3],
            &[
                PathBuf::from("/proc/self/fd/lib"),
                PathBuf::from("/proc/self/fd"),
                PathBuf::from("/opt/x")
            ]
        );
        assert!(dirs.contains(&PathBuf::from("/usr/lib")));
    }

    #[test]
    fn the_c_library_is_installed_and_a_made_up_one_is_not() {
        let dirs = search_directories(&[], Path::new("/"));
        // The host's own C library is mapped, so its directory is searched.
        let libc = loaded_library_directories()
            .iter()
            .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| n.starts_with("libc.so") || n.starts_with("libc.musl"))
            .expect("a C library next to the mapped ones");
        assert!(installed(&libc, &dirs), "{libc}");
        assert!(!installed("libprovtarget-no-such-library.so.9", &dirs));
        assert!(!installed("/nonexistent/libx.so", &dirs));
    }

    #[test]
    fn a_library_whose_imports_all_resolve_has_no_cause_from_the_facts() {
        // The test kit plugin loads: every import is found (in the host's global scope
        // or its needed libraries), so the facts name nothing and dlerror would be shown.
        let path = provtarget_testsupport::cdylib("provtarget-testkit");
        let file = File::open(&path).unwrap();
        assert_eq!(diagnose(&file, &path), Cause::Unknown);
    }

    #[test]
    fn imports_are_looked_up_in_the_host_and_its_loaded_libraries() {
        let libc = LoadedLibrary::find("libc.so.6").or_else(|| LoadedLibrary::find("libc.so"));
        let libraries: Vec<LoadedLibrary> = libc.into_iter().collect();
        let symbols = ["malloc".to_string(), "provtarget_no_such_symbol_42".into()];
        assert_eq!(
            unresolved(&symbols, &libraries),
            ["provtarget_no_such_symbol_42"]
        );
        assert!(LoadedLibrary::find("libprovtarget-not-loaded.so.1").is_none());
    }
}
