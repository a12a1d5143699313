//! From a checked image to a plugin: `dlopen`, abi_stable's header, interface and
//! layout checks, and the constructor.
#![forbid(unsafe_code)]

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use provtarget_abi::host::{OpenErrorKind, PluginInfo, PluginLibrary, PluginResolver};

#[cfg(target_os = "linux")]
use crate::dlopen_failure::Cause;
use crate::{
    image::Image,
    sys,
    text::{one_line, printable, shown},
    Refusal, RefusalKind, Stage,
};

/// `dlopen`s `image` (already hashed and checked) and reads its root module.
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
pub(crate) fn open(image: Image, path: &Path) -> Result<PluginLibrary, Refusal> {
    // The checks are done; the dynamic linker makes its own mappings.
    let file = image.into_file();
    #[cfg(target_os = "linux")]
    let load_path = {
        use std::os::unix::io::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))
    };
    #[cfg(not(target_os = "linux"))]
    let load_path = path.to_path_buf();

    let p = shown(path);
    let in_reason = |text: &str| one_line(&text.replace(&*load_path.to_string_lossy(), &p));

    // Bind every symbol now, or refuse (see above). Its initialisers run here: a crash
    // or exit in them leaves last words naming the file.
    let guard = sys::last_words::enter(&p, sys::last_words::Call::Load);
    let opened = sys::dlopen_now(&load_path);
    drop(guard);
    if let Err(dlerror) = opened {
        tracing::debug!(path = ?p, dlerror = ?dlerror, "dlopen(RTLD_NOW) refused the plugin");
        let (kind, what) = refused_because(&file, &load_path, &in_reason(&dlerror));
        return Err(Refusal::new(
            Stage::Load,
            kind,
            format!("{p}: not a loadable library: {what}"),
        ));
    }
    // The dynamic linker accepted it: it stays loaded, so must its name.
    sys::keep_open_forever(file);

    sys::open_plugin_library(&load_path).map_err(|e| {
        tracing::debug!(path = ?p, detail = ?e.detail, "plugin library refused");
        let message = in_reason(&e.message);
        let (stage, kind, fix) = match e.kind {
            OpenErrorKind::NotLoadable => (
                Stage::Load,
                RefusalKind::DlopenFailed,
                "; rebuild it for this host or install its missing dependencies",
            ),
            OpenErrorKind::NotAPlugin => (Stage::RootModule, RefusalKind::NotAPlugin, ""),
            OpenErrorKind::AbiStableMismatch => {
                (Stage::AbiHeader, RefusalKind::AbiStableMismatch, "")
            }
            OpenErrorKind::InterfaceMismatch => {
                (Stage::Interface, RefusalKind::InterfaceMismatch, "")
            }
            OpenErrorKind::LayoutMismatch => (Stage::Interface, RefusalKind::LayoutMismatch, ""),
            OpenErrorKind::RootModule => (
                Stage::Constructor,
                RefusalKind::ConstructorFailed,
                "; report it to the plugin's vendor",
            ),
            _ => (Stage::Load, RefusalKind::DlopenFailed, ""),
        };
        Refusal::new(stage, kind, format!("{p}: {message}{fix}"))
    })
}

/// The kind and the reason (without the path) for a library the dynamic linker
/// refused, from the facts (see `dlopen_failure`): the unresolved symbol or the missing
/// library is named; otherwise `dlerror`'s text (`dlerror`, already one line) is shown.
fn refused_because(file: &File, load_path: &Path, dlerror: &str) -> (RefusalKind, String) {
    const REBUILD: &str = "rebuild it for this host or install its missing dependencies";
    if crate::discover::proc_missing() {
        return (
            RefusalKind::DlopenFailed,
            format!("{dlerror}; /proc is not mounted; provtarget needs /proc on Linux"),
        );
    }
    #[cfg(target_os = "linux")]
    match crate::dlopen_failure::diagnose(file, load_path) {
        Cause::Unresolved(symbols) => {
            let more = match symbols.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            return (
                RefusalKind::UnresolvedSymbol,
                format!(
                    "undefined symbol: {}{more}; it needs a symbol that neither this host \
                     nor its libraries provide: rebuild it for this host (link with -z now \
                     to catch this at build time)",
                    printable(&symbols[0])
                ),
            );
        }
        Cause::MissingLibraries(libraries) => {
            let names: Vec<String> = libraries.iter().map(|l| printable(l)).collect();
            let (it, them) = if names.len() == 1 {
                ("library", "it")
            } else {
                ("libraries", "them")
            };
            return (
                RefusalKind::DlopenFailed,
                format!(
                    "it needs the {it} {}, installed in none of the directories the dynamic \
                     linker searches: install {them}, or {REBUILD}",
                    names.join(", ")
                ),
            );
        }
        Cause::Unknown => {}
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, load_path);
    (RefusalKind::DlopenFailed, format!("{dlerror}; {REBUILD}"))
}

/// Runs the plugin's constructor (a panic comes back as an error).
pub(crate) fn construct(
    library: &PluginLibrary,
    info: &PluginInfo,
    path: &Path,
) -> Result<PluginResolver, Refusal> {
    let _guard = sys::last_words::enter(&info.name, sys::last_words::Call::Constructor);
    library.new_resolver().map_err(|e| {
        let vendor = printable(info.vendor.trim());
        let whom = if vendor.is_empty() {
            "the plugin's vendor".to_string()
        } else {
            format!("its vendor ({vendor})")
        };
        Refusal::new(
            Stage::Constructor,
            RefusalKind::ConstructorFailed,
            format!(
                "{}: plugin {} could not be constructed: {}; check its requirements or \
                 report it to {whom}",
                shown(path),
                printable(&info.name),
                one_line(&e)
            ),
        )
    })
}
