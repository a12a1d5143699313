//! Fixtures generated from the frozen layouts: a plugin built straight on
//! `plugin-abi/src/ffi/v1_N.rs`, as a vendor's binary built against provtarget-abi 1.N
//! is, with no hand-made workspace to keep in step.
//!
//! For each entry of [`FROZEN`], [`frozen_plugin`] writes (at test time, under
//! `target/frozen/`) a workspace of two crates and builds it once per process:
//!
//! - `abi`: a package named `provtarget-abi` at version `1.N.0` whose library *is* the
//!   frozen layout file (`[lib] path` points at `plugin-abi/src/ffi/v1_N.rs`), so it
//!   cannot drift from what the host reads. abi_stable's layout checker compares type
//!   names and the defining package's name and version (loosely), not module paths:
//!   this crate passes as the real 1.N, and it cannot sit in the main workspace
//!   beside the real `provtarget-abi`.
//! - `plugin`: a cdylib written straight on that layout (no SDK), whose source is
//!   assembled from the layout's text: the calls every 1.x layout has, plus one row
//!   of [`OPTIONAL`] for each optional call the layout declares. Its identity and
//!   answers are those of [`FrozenFixture`].
//!
//! Freezing the current version is one entry in [`FROZEN`] (its version and the
//! digest of its code, [`layout_digest`]); a layout that adds a call the generator
//! does not know yet also needs that call's row in [`OPTIONAL`] (the build fails
//! with cargo's error naming the missing method or field until it has one).
//!
//! The committed `tests/legacy-1.0` and `tests/legacy-1.1` workspaces stay as they
//! are (binaries built by others rely on them being fixed); the contract tests check
//! that the generated 1.0 and 1.1 fixtures behave like them.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

/// A frozen layout that has a generated fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frozen {
    /// `major.minor`, the `N` of `plugin-abi/src/ffi/v1_N.rs` (e.g. `1.2`).
    pub version: &'static str,
    /// [`layout_digest`] of that file as released: a released layout never changes,
    /// and the contract tests fail, naming the file, if its code does.
    pub code_digest: u64,
}

/// Every released layout, oldest first. Freezing a version is one entry here (run the
/// contract tests once to be told its digest).
pub const FROZEN: &[Frozen] = &[
    Frozen {
        version: "1.0",
        code_digest: 0x78c0_f74f_42ee_aefc,
    },
    Frozen {
        version: "1.1",
        code_digest: 0xe0e7_fc50_a5d7_0394,
    },
    Frozen {
        version: "1.2",
        code_digest: 0x2bdc_0743_fb6c_05b5,
    },
];

/// One optional call of the contract, as the generated plugin implements it. A layout
/// has the call when its code (see [`layout_code`]) contains `marker`.
#[derive(Debug, Clone, Copy)]
pub struct Optional {
    /// The call's name in the layout (`config_keys`, `answer`).
    pub call: &'static str,
    /// Text of the layout's code that declares the call.
    pub marker: &'static str,
    /// Methods added to the plugin's `impl FfiResolver` (may be empty).
    pub resolver_methods: &'static str,
    /// Items added at the plugin's top level (may be empty).
    pub items: &'static str,
    /// Fields added to the plugin's `PluginModule` value (may be empty).
    pub root_fields: &'static str,
    /// What the host's `host::Answer` then holds besides the targets: JSON members
    /// (`"field": value`, comma-separated; may be empty), as `Answer` serializes them.
    pub answer: &'static str,
}

/// The optional calls the generated plugins know, in the order they joined the
/// contract. The texts may say `{version}` for the layout's `1.N`, and the code may
/// use the constants the generated source defines (`NAME`, `TARGET`, `KEY`).
pub const OPTIONAL: &[Optional] = &[
    // 1.1: the root module's `config_keys`.
    Optional {
        call: "config_keys",
        marker: "pub config_keys: extern \"C\" fn() -> RVec<FfiConfigKey>",
        resolver_methods: "",
        items: r#"
extern "C" fn config_keys() -> RVec<FfiConfigKey> {
    vec![FfiConfigKey {
        key: KEY.into(),
        default: "lon1".into(),
        description: "a key declared through config_keys".into(),
    }]
    .into()
}
"#,
        root_fields: "config_keys,",
        answer: "",
    },
    // 1.2: the resolver's `answer`, the targets plus a provenance text.
    Optional {
        call: "answer",
        marker: "fn answer(&self, host: FfiHostRef<'_>) -> RResult<FfiAnswer, RString>",
        resolver_methods: r#"
    fn answer(&self, host: FfiHostRef<'_>) -> RResult<FfiAnswer, RString> {
        self.targets(host).map(|list| {
            abi_stable::std_types::Tuple2(list, "fixture answer of interface {version}".into())
        })
    }
"#,
        items: "",
        root_fields: "",
        answer: r#""provenance": "fixture answer of interface {version}""#,
    },
];

/// What a generated fixture is and answers: everything a test needs to check it,
/// derived from its version (so no test spells a fixture's texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrozenFixture {
    /// The frozen layout it was built on.
    pub frozen: Frozen,
    /// The built cdylib.
    pub path: PathBuf,
    /// The interface version it declares (`1.N.0`).
    pub interface_version: String,
    /// Its plugin and resolver name.
    pub name: String,
    /// The one target it answers.
    pub target: String,
    /// The configuration key it declares, when its layout has `config_keys`.
    pub key: Option<String>,
    /// The non-null fields of the `host::Answer` the host reads from it, as a JSON
    /// object (`{}` for a layout with no optional part of an answer).
    pub answer: String,
    /// The info-level lines it logs in `configure` and `targets`.
    pub logs: [String; 2],
}

/// The frozen layouts' files: `plugin-abi/src/ffi/v1_N.rs` for `version` `1.N`.
pub fn layout_file(version: &str) -> PathBuf {
    crate::workspace_root()
        .join("plugin-abi/src/ffi")
        .join(format!("v{}.rs", version.replace('.', "_")))
}

/// Rust source reduced to its code tokens: `//` comments, attributes that only
/// silence lints, and white space removed (what a layout digest covers).
pub fn layout_code(source: &str) -> String {
    source
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .filter(|l| !l.trim_start().starts_with("#![allow("))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The digest pinned in [`Frozen::code_digest`]: 64-bit FNV-1a of [`layout_code`].
/// Not a security measure, a tripwire against editing a released layout.
pub fn layout_digest(source: &str) -> u64 {
    layout_code(source)
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// The entry of [`FROZEN`] for `version` (`1.N`); panics naming the list when there
/// is none.
pub fn frozen(version: &str) -> Frozen {
    *FROZEN
        .iter()
        .find(|f| f.version == version)
        .unwrap_or_else(|| {
            panic!("interface {version} has no entry in FROZEN (tests/support/src/frozen.rs)")
        })
}

/// The fixture generated from the frozen layout `version` (`1.N`, an entry of
/// [`FROZEN`]), built once per process into `target/frozen/`.
pub fn frozen_plugin(version: &str) -> FrozenFixture {
    static BUILT: OnceLock<Mutex<HashMap<String, FrozenFixture>>> = OnceLock::new();
    let frozen = frozen(version);
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(version.to_string())
        .or_insert_with(|| build(frozen))
        .clone()
}

fn tag(version: &str) -> String {
    version.replace('.', "")
}

fn fixture(frozen: Frozen, path: PathBuf, optional: &[&Optional]) -> FrozenFixture {
    let v = frozen.version;
    let t = tag(v);
    FrozenFixture {
        frozen,
        path,
        interface_version: format!("{v}.0"),
        name: format!("Frozen {v} Resolver"),
        target: format!("frozen{t}.example.net:4222"),
        key: optional
            .iter()
            .any(|o| o.call == "config_keys")
            .then(|| format!("plugin.frozen{t}.zone")),
        answer: format!(
            "{{{}}}",
            optional
                .iter()
                .map(|o| o.answer)
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
                .replace("{version}", v)
        ),
        logs: [
            format!("frozen {v} resolver configured"),
            format!("frozen {v} resolver resolving"),
        ],
    }
}

fn build(frozen: Frozen) -> FrozenFixture {
    let layout = layout_file(frozen.version);
    let code = layout_code(&std::fs::read_to_string(&layout).unwrap_or_else(|e| {
        panic!(
            "cannot read {} for the frozen {} fixture: {e}",
            layout.display(),
            frozen.version
        )
    }));
    let optional: Vec<&Optional> = OPTIONAL
        .iter()
        .filter(|o| code.contains(&layout_code(o.marker)))
        .collect();

    let target = crate::target_dir().join("frozen");
    let root = target.join(format!("v{}", tag(frozen.version)));
    let package = format!(
        "provtarget-test-frozen-{}",
        frozen.version.replace('.', "-")
    );
    let files = workspace_files(frozen, &layout, &package, &optional);
    for (name, contents) in &files {
        write_if_changed(&root.join(name), contents);
    }
    // Start from the main workspace's lock, so the fixture links the same abi_stable
    // as the host without resolving anything anew; cargo trims it to what it needs.
    let lock = root.join("Cargo.lock");
    if !lock.exists() {
        let main = std::fs::read(crate::workspace_root().join("Cargo.lock"))
            .expect("cannot read the workspace's Cargo.lock");
        write_if_changed(&lock, &main);
    }
    let manifest = root.join("Cargo.toml");
    let build_dir = target.join("build");
    let args = [
        "build".as_ref(),
        "--quiet".as_ref(),
        "--manifest-path".as_ref(),
        manifest.as_os_str(),
        "--target-dir".as_ref(),
        build_dir.as_os_str(),
    ];
    crate::cargo(
        &root,
        &args,
        &format!(
            "the fixture generated from {} (if the layout gained a call, add its row to \
             OPTIONAL in tests/support/src/frozen.rs)",
            layout.display()
        ),
    );
    let path = target
        .join("build/debug")
        .join(crate::cdylib_file_name(&package));
    assert!(path.exists(), "{} was not built", path.display());
    fixture(frozen, path, &optional)
}

/// The generated workspace: file name (relative to its root) and contents.
fn workspace_files(
    frozen: Frozen,
    layout: &Path,
    package: &str,
    optional: &[&Optional],
) -> Vec<(&'static str, Vec<u8>)> {
    let v = frozen.version;
    let t = tag(v);
    let lock_note = "# Generated by provtarget-testsupport (tests/support/src/frozen.rs); \
                     edits are overwritten.";
    let workspace =
        format!("{lock_note}\n[workspace]\nresolver = \"2\"\nmembers = [\"abi\", \"plugin\"]\n");
    let abi = format!(
        "{lock_note}\n[package]\nname = \"provtarget-abi\"\nversion = \"{v}.0\"\n\
         edition = \"2021\"\npublish = false\n\n[lib]\npath = {path:?}\n\n\
         [dependencies]\nabi_stable = \"0.11\"\n",
        path = layout.display().to_string()
    );
    let plugin_manifest = format!(
        "{lock_note}\n[package]\nname = \"{package}\"\nversion = \"{v}.9\"\n\
         edition = \"2021\"\npublish = false\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
         [dependencies]\nabi_stable = \"0.11\"\nprovtarget-abi = {{ path = \"../abi\" }}\n"
    );
    let methods: String = optional.iter().map(|o| o.resolver_methods).collect();
    let items: String = optional.iter().map(|o| o.items).collect();
    let fields: String = optional.iter().map(|o| o.root_fields).collect();
    let fixture = fixture(frozen, PathBuf::new(), optional);
    let source = format!(
        r#"//! Generated by provtarget-testsupport from {layout}: a plugin built straight on
//! the frozen interface {v} layout, as a vendor's binary of that time was.
#![allow(non_local_definitions, dead_code)]
use abi_stable::{{
    export_root_module,
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{{RResult, RString, RVec}},
}};
use provtarget_abi::*;

const NAME: &str = {name:?};
const TARGET: &str = {target:?};
const KEY: &str = "plugin.frozen{t}.zone";

struct Frozen;

impl FfiResolver for Frozen {{
    fn name(&self) -> RString {{
        NAME.into()
    }}
    fn configure(&mut self, host: FfiHostRef<'_>, _config: FfiPairs) -> RResult<FfiPairs, RString> {{
        host.log(3, {configured:?}.into());
        RResult::ROk(RVec::new())
    }}
    fn targets(&self, host: FfiHostRef<'_>) -> RResult<RVec<RString>, RString> {{
        host.log(3, {resolving:?}.into());
        RResult::ROk(vec![RString::from(TARGET)].into())
    }}
{methods}}}

extern "C" fn info() -> FfiPluginInfo {{
    FfiPluginInfo {{
        name: NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        plugin_type: 3,
        vendor: "Frozen Vendor".into(),
        description: "built against interface {v}".into(),
        interface_version: INTERFACE_VERSION.into(),
        rustc_version: "rustc (fixture)".into(),
        target: "fixture".into(),
        abi_stable_version: "0.11".into(),
        sdk_version: "{v}.0".into(),
    }}
}}

extern "C" fn new_resolver() -> RResult<FfiResolverBox, RString> {{
    RResult::ROk(FfiResolver_TO::from_value(Frozen, TD_Opaque))
}}
{items}
#[export_root_module]
fn root() -> PluginModule_Ref {{
    PluginModule {{
        info,
        new_resolver,
        {fields}
    }}
    .leak_into_prefix()
}}
"#,
        methods = methods.replace("{version}", v),
        items = items.replace("{version}", v),
        layout = layout.display(),
        name = fixture.name,
        target = fixture.target,
        configured = fixture.logs[0],
        resolving = fixture.logs[1],
    );
    vec![
        ("Cargo.toml", workspace.into_bytes()),
        ("abi/Cargo.toml", abi.into_bytes()),
        ("plugin/Cargo.toml", plugin_manifest.into_bytes()),
        ("plugin/src/lib.rs", source.into_bytes()),
    ]
}

/// Writes `contents` to `path` unless it already holds them (so cargo sees nothing
/// new), through a temporary file and a rename (so a test process building the same
/// fixture at the same time never reads half a file).
fn write_if_changed(path: &Path, contents: &[u8]) {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return;
    }
    let dir = path.parent().expect("a file inside the fixture");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, path))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
