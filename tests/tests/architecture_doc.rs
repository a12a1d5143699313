//! ARCHITECTURE.md stays true (issue 16, item 10): every file path it spells exists,
//! every `Type::item` or `module::item` of this repository it names is defined where
//! it says, and the crate map names every module file of the loader and of core.
//!
//! The document is read as text: code spans (`` `...` ``) are the references. Paths
//! outside the repository (`/etc/...`), external crates' items and spans marked as
//! examples are skipped by the rules below.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every tracked-looking source file of the repository (no `target/`, no `.git`).
fn repo_files() -> Vec<String> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name == "target" || name == ".git" {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &root(), &mut out);
    out
}

/// The code spans of a Markdown text.
fn code_spans(doc: &str) -> Vec<String> {
    let mut spans = Vec::new();
    let mut in_fence = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let parts: Vec<&str> = line.split('`').collect();
        for (i, p) in parts.iter().enumerate() {
            if i % 2 == 1 && i + 1 < parts.len() {
                spans.push(p.trim().to_string());
            }
        }
    }
    spans
}

fn is_path_like(s: &str) -> bool {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let has_ext = [".rs", ".toml", ".md", ".sh", ".json", ".c", ".lock"]
        .iter()
        .any(|e| s.ends_with(e));
    ok_chars && !s.starts_with('/') && !s.contains("..") && (has_ext || s.contains('/'))
}

/// A path span resolves when it names a file or folder from the root, or is the tail
/// of one (`host/layouts.rs` inside `plugin-abi/src/`).
fn resolves(path: &str, files: &[String]) -> bool {
    let p = path.trim_end_matches('/');
    files.iter().any(|f| {
        f == p
            || f.starts_with(&format!("{p}/"))
            || f.ends_with(&format!("/{p}"))
            || f.contains(&format!("/{p}/"))
    })
}

/// External crates whose items the document may name.
const EXTERNAL: &[&str] = &[
    "std",
    "core",
    "libc",
    "object",
    "tokio",
    "clippy",
    "abi_stable",
    "serde",
    "serde_json",
    "rustix",
    "libloading",
    "tracing",
    "rustls",
    "ureq",
    "minisign_verify",
    "blake2",
];

fn defines(text: &str, name: &str) -> bool {
    let kinds = [
        "fn",
        "struct",
        "enum",
        "trait",
        "const",
        "mod",
        "type",
        "static",
        "macro_rules!",
    ];
    kinds.iter().any(|k| {
        text.match_indices(&format!("{k} {name}")).any(|(i, m)| {
            let next = text[i + m.len()..].chars().next().unwrap_or(' ');
            let prev = text[..i].chars().last().unwrap_or(' ');
            let word = |c: char| c.is_alphanumeric() || c == '_';
            !(word(next) || word(prev))
        })
    }) || text.contains(&format!(" as {name};"))
        || reexports(text, name)
        || text.lines().any(|l| {
            // enum variants and struct fields: `Name,` `Name {` `Name(` `name:`
            let t = l.trim_start().trim_start_matches("pub ");
            t.strip_prefix(name)
                .and_then(|r| r.chars().next())
                .is_some_and(|c| "({,: =".contains(c))
        })
}

/// Whether `name` is re-exported by a `pub use …;` statement of `text` (one line or
/// a braced list over several).
fn reexports(text: &str, name: &str) -> bool {
    text.match_indices("pub use ").any(|(i, _)| {
        let statement = text[i..].split(';').next().unwrap_or("");
        statement
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .any(|w| w == name)
    })
}

/// A placeholder in a path (`v1_N.rs`, `v1_<n>.rs`): a pattern, not a file.
fn is_placeholder(path: &str) -> bool {
    path.split(['/', '.', '_'])
        .any(|seg| seg.len() <= 2 && seg.chars().last().is_some_and(|c| c.is_ascii_uppercase()))
}

#[test]
fn every_reference_in_architecture_md_resolves() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let files = repo_files();
    let sources: Vec<(String, String)> = files
        .iter()
        .filter(|f| f.ends_with(".rs"))
        .map(|f| {
            (
                f.clone(),
                std::fs::read_to_string(root.join(f)).unwrap_or_default(),
            )
        })
        .collect();
    let mut bad = Vec::new();
    for span in code_spans(&doc) {
        if is_path_like(&span) {
            // A bare file name that is not a source file may be one the program
            // writes at run time (`verdicts.json`).
            let runtime_name = !span.contains('/') && !span.ends_with(".rs");
            if !resolves(&span, &files) && !is_placeholder(&span) && !runtime_name {
                bad.push(format!("path `{span}` does not exist"));
            }
            continue;
        }
        if span.ends_with("::default()") {
            continue; // a derived `Default`
        }
        let item = span.trim_end_matches("()");
        let segs: Vec<&str> = item.split("::").collect();
        let is_item_path = segs.len() >= 2
            && segs
                .iter()
                .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        if !is_item_path || EXTERNAL.contains(&segs[0]) {
            continue;
        }
        let (owner, name) = (segs[segs.len() - 2], segs[segs.len() - 1]);
        let found = if owner.starts_with(|c: char| c.is_ascii_uppercase()) {
            // `Type::item`: the type is defined somewhere, and the item in a file that
            // defines or implements that type.
            sources.iter().any(|(_, t)| defines(t, owner))
                && sources.iter().any(|(_, t)| {
                    (defines(t, owner)
                        || t.contains(&format!(" for {owner}"))
                        || t.contains(&format!("impl {owner}")))
                        && defines(t, name)
                })
        } else {
            // `module::item`: the item in a file of that module (its `.rs`, its
            // `mod.rs`/`lib.rs`, a file declaring `mod module`), or in a crate root.
            sources.iter().any(|(f, t)| {
                let p = Path::new(f);
                let stem = p.file_stem().unwrap().to_string_lossy();
                let dir = p
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_string_lossy().replace('-', "_"))
                    .unwrap_or_default();
                let crate_dir = f.split('/').next().unwrap_or("").replace('-', "_");
                let module_file = stem == owner
                    || ((stem == "mod" || stem == "lib") && dir == owner)
                    || t.contains(&format!("mod {owner}"))
                    || (stem == "lib" && (owner.starts_with("provtarget") || crate_dir == owner));
                module_file && defines(t, name)
            })
        };
        if !found {
            bad.push(format!("`{span}` is not defined where the document says"));
        }
    }
    assert!(bad.is_empty(), "ARCHITECTURE.md:\n{}", bad.join("\n"));
}

#[test]
fn the_crate_map_names_every_module_of_the_loader_and_core() {
    let root = root();
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let mut missing = Vec::new();
    for f in repo_files() {
        let in_scope =
            (f.starts_with("loader/src/") || f.starts_with("core/src/")) && f.ends_with(".rs");
        if !in_scope || f.ends_with("/lib.rs") || f.ends_with("/main.rs") {
            continue;
        }
        // Named by its path from `src/` (`isolation/process.rs`, `sys/child.rs`) or,
        // for a top-level module, by its file name (`scan.rs`).
        let rel = f.split_once("/src/").unwrap().1.to_string();
        let named = doc.contains(&format!("`{rel}`"))
            || doc.contains(&format!("`{f}`"))
            || doc.contains(&format!("/{rel}`"));
        if !named {
            missing.push(f);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md's crate map does not name: {}",
        missing.join(", ")
    );
}

#[test]
fn the_checker_itself_catches_a_wrong_reference() {
    // A document with one good and two wrong references: the rules above must tell
    // them apart, or the tests above could pass by checking nothing.
    let files = repo_files();
    assert!(resolves("loader/src/scan.rs", &files));
    assert!(resolves("host/layouts.rs", &files));
    assert!(!resolves("loader/src/no_such_module.rs", &files));
    let spans = code_spans("a `x.rs` b\n```\n`in_fence.rs`\n```\n`y::z()`");
    assert_eq!(spans, ["x.rs", "y::z()"]);
    assert!(defines("pub fn load_all(x: u8)", "load_all"));
    assert!(!defines("pub fn load_all_more(x: u8)", "load_all"));
    assert!(defines(
        "pub use a::{\n    b,\n    load_all,\n};",
        "load_all"
    ));
    assert!(is_placeholder("plugin-abi/src/ffi/v1_N.rs"));
    assert!(is_placeholder("target/frozen/vN/"));
    assert!(!is_placeholder("plugin-abi/src/ffi/v1_2.rs"));
}
