//! Plugin-side glue behind [`crate::export_plugin!`]: turns a [`Resolver`] into the
//! abi_stable root module, and makes sure no panic ever crosses the boundary
//! (abi_stable's own shims call `exit(1)` on a panic, which would take the host down).

#![forbid(unsafe_code)]

use std::{
    any::Any,
    cell::RefCell,
    panic::{self, AssertUnwindSafe},
    sync::Once,
};

pub use abi_stable::library::LibHeader as LibHeaderAlias;

use abi_stable::{
    library::{LibHeader, RootModuleResult},
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RString, RVec, Tuple2},
};

use crate::{
    ffi::current::{
        FfiAnswer, FfiConfigKey, FfiHostRef, FfiPairs, FfiPluginInfo, FfiResolver, FfiResolverBox,
        FfiResolver_TO, PluginModule, PluginModule_Ref, INTERFACE_VERSION,
    },
    text::one_line,
    Config, Context, Resolver,
};

/// The exported symbol's header for resolver `R`; used by [`crate::export_plugin!`].
pub const fn lib_header<R: Resolver>() -> LibHeader {
    crate::raw::header_for_root_module(root_module_loader::<R>)
}

extern "C" fn root_module_loader<R: Resolver>() -> RootModuleResult {
    abi_stable::library::__call_root_module_loader(root_module::<R>)
}

fn root_module<R: Resolver>() -> PluginModule_Ref {
    PluginModule {
        info: info::<R>,
        new_resolver: new_resolver::<R>,
        config_keys: config_keys::<R>,
    }
    .leak_into_prefix()
}

extern "C" fn info<R: Resolver>() -> FfiPluginInfo {
    FfiPluginInfo {
        name: R::NAME.into(),
        version: R::VERSION.into(),
        plugin_type: R::PLUGIN_TYPE.id(),
        vendor: R::VENDOR.into(),
        description: R::DESCRIPTION.into(),
        interface_version: INTERFACE_VERSION.into(),
        rustc_version: crate::BUILD_RUSTC.into(),
        target: crate::BUILD_TARGET.into(),
        abi_stable_version: crate::ABI_STABLE_VERSION.into(),
        sdk_version: env!("CARGO_PKG_VERSION").into(),
    }
}

extern "C" fn new_resolver<R: Resolver>() -> RResult<FfiResolverBox, RString> {
    match guarded::<R, _>("new", R::new) {
        Ok(resolver) => RResult::ROk(FfiResolver_TO::from_value(
            Exported(Some(resolver)),
            TD_Opaque,
        )),
        Err(e) => RResult::RErr(e.into()),
    }
}

extern "C" fn config_keys<R: Resolver>() -> RVec<FfiConfigKey> {
    // A panic here is reported as "no keys": the list is informational.
    guarded::<R, _>("config_keys", || Ok(R::config_keys()))
        .unwrap_or_default()
        .into_iter()
        .map(|k| FfiConfigKey {
            key: k.key.into(),
            default: k.default.into(),
            description: k.description.into(),
        })
        .collect()
}

/// The resolver as the host holds it. An `Option` so that dropping it (when the
/// host lets go of the resolver) also runs under [`guarded`]: abi_stable's own
/// destructor shim aborts the process if a `Drop` impl panics. Always `Some` until
/// it is dropped.
struct Exported<R: Resolver>(Option<R>);

impl<R: Resolver> Exported<R> {
    fn resolver(&self) -> Result<&R, crate::Error> {
        self.0
            .as_ref()
            .ok_or_else(|| "the resolver was already dropped".into())
    }
    fn resolver_mut(&mut self) -> Result<&mut R, crate::Error> {
        self.0
            .as_mut()
            .ok_or_else(|| "the resolver was already dropped".into())
    }
}

impl<R: Resolver> Drop for Exported<R> {
    fn drop(&mut self) {
        let resolver = self.0.take();
        // A panicking destructor has nobody to report to; the value is gone either way.
        let _ = guarded::<R, _>("drop", move || {
            drop(resolver);
            Ok(())
        });
    }
}

impl<R: Resolver> FfiResolver for Exported<R> {
    fn name(&self) -> RString {
        R::NAME.into()
    }

    fn configure(&mut self, host: FfiHostRef<'_>, config: FfiPairs) -> RResult<FfiPairs, RString> {
        let config: Config = config.into_iter().map(|t| (t.0, t.1)).collect();
        // A panic in config_keys leaves the typed getters without declared defaults.
        let keys = guarded::<R, _>("config_keys", || Ok(R::config_keys())).unwrap_or_default();
        let config = config.with_keys(&keys);
        let ctx = Context::new(&host);
        match guarded::<R, _>("configure", || {
            self.resolver_mut()?.configure(&ctx, &config)
        }) {
            Ok(settings) => RResult::ROk(
                settings
                    .into_iter()
                    .map(|(k, v)| Tuple2(k.into(), v.into()))
                    .collect(),
            ),
            Err(e) => RResult::RErr(e.into()),
        }
    }

    fn targets(&self, host: FfiHostRef<'_>) -> RResult<RVec<RString>, RString> {
        self.answer(host).map(|answer| answer.0)
    }

    fn answer(&self, host: FfiHostRef<'_>) -> RResult<FfiAnswer, RString> {
        let ctx = Context::new(&host);
        match guarded::<R, _>("targets", || self.resolver()?.targets(&ctx)) {
            Ok(targets) => RResult::ROk(Tuple2(
                targets.into_iter().map(RString::from).collect(),
                ctx.provenance_given().unwrap_or_default().into(),
            )),
            Err(e) => RResult::RErr(e.into()),
        }
    }
}

thread_local! {
    /// Set while a plugin call runs under [`guarded`]: the panic hook records the
    /// message and location here instead of printing to stderr.
    static CAPTURE: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Installs (once per plugin library: each cdylib has its own copy of `std`) a panic
/// hook that captures panics raised inside guarded calls and leaves all others to the
/// previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| {
                let mut slot = c.borrow_mut();
                match slot.as_mut() {
                    Some(place) => {
                        let location = info
                            .location()
                            .map(|l| format!(" at {}:{}", l.file(), l.line()))
                            .unwrap_or_default();
                        *place = Some(format!("{}{location}", payload_text(info.payload())));
                        true
                    }
                    None => false,
                }
            });
            if !captured {
                previous(info);
            }
        }));
    });
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Runs one plugin call, turning both errors and panics into a one-line message.
fn guarded<R: Resolver, T>(
    call: &str,
    f: impl FnOnce() -> Result<T, crate::Error>,
) -> Result<T, String> {
    install_panic_hook();
    let outer = CAPTURE.with(|c| c.borrow_mut().replace(None));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let captured = CAPTURE.with(|c| std::mem::replace(&mut *c.borrow_mut(), outer));
    match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(one_line(&e.to_string())),
        Err(payload) => {
            let message = captured
                .flatten()
                .unwrap_or_else(|| payload_text(payload.as_ref()));
            Err(one_line(&format!(
                "plugin {} panicked in {call}: {message}",
                R::NAME
            )))
        }
    }
}
