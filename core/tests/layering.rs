//! Core's files form one direction of flow (issue 16, item 4): configuration →
//! selection → resolvers (in process or in a child) → host → rendering → command
//! line. This test reads `core/src` as text, finds every reference a file makes to
//! another file of the crate (`crate::…`, `super::…`, and a `mod.rs`'s references to
//! its own submodules), and fails on
//!
//! - a file whose top-level module is not placed in [`LAYERS`] (place it);
//! - a reference from a lower layer to a higher one;
//! - any cycle among files (each named, in order).
//!
//! It reads source text rather than compiler output so that it runs in a plain
//! `cargo test` in a second; a path spelled in a comment counts too, which errs on the
//! side of strictness.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `core/src`, lowest layer first. A module may use its own
/// layer and the ones below.
const LAYERS: &[&[&str]] = &[
    &["text", "logsink"],
    &["config"],
    &["resolver", "servers"],
    &["selection", "default_resolver", "broker_check"],
    &["isolation"],
    &["host"],
    &["buildinfo", "output"],
    &["cli", "lib", "main"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Module path (e.g. `["isolation", "process"]`) of a file under `src`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The file defining the longest prefix of `path` (a module path) that exists.
fn file_for(files: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| files.contains_key(p))
}

/// Identifier-ish path segments following `start` in `line` (`a::b::{c, d}` → a, b).
fn segments_after(line: &str, start: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = &line[start..];
    loop {
        let word: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word.is_empty() {
            break;
        }
        rest = &rest[word.len()..];
        out.push(word);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    out
}

/// Every file (module path) that `file` refers to.
fn references(
    files: &BTreeMap<Vec<String>, PathBuf>,
    me: &[String],
    text: &str,
) -> BTreeSet<Vec<String>> {
    let is_mod_rs = files[me].ends_with("mod.rs") || me.is_empty();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for (i, _) in line.match_indices("::") {
            // The segment just before `::`.
            let before: String = line[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let seg_start = i - before.len();
            let preceded_by_path = line[..seg_start].ends_with("::");
            if preceded_by_path {
                continue;
            }
            // `super::{a::x, b::y}` and `crate::{a, b::c}`: each item is a path of
            // its own (on this line; rustfmt puts long lists one item a line, each
            // of which then starts with its own first segment and is read below
            // as a reference only if it names a file).
            let afters: Vec<Vec<String>> = match line[i + 2..].strip_prefix('{') {
                Some(list) => list
                    .split(['}', ','])
                    .map(|item| segments_after(item.trim_start(), 0))
                    .filter(|segs| !segs.is_empty())
                    .collect(),
                None => vec![segments_after(line, i + 2)],
            };
            for after in afters {
                if let Some(target) = resolve(files, me, is_mod_rs, &before, after) {
                    if target != me {
                        out.insert(target);
                    }
                }
            }
        }
    }
    out
}

/// The file a path names, read from `me`: `before` is the segment before `::`
/// (`crate`, `super`, or a child module of a `mod.rs`), `after` the segments after.
fn resolve(
    files: &BTreeMap<Vec<String>, PathBuf>,
    me: &[String],
    is_mod_rs: bool,
    before: &str,
    after: Vec<String>,
) -> Option<Vec<String>> {
    let path: Vec<String> = match before {
        "crate" => after,
        "super" => {
            // `super::super::x` is followed through.
            // `super` of `a/b.rs` and of `a/b/mod.rs` is `a`.
            let mut base = me.to_vec();
            base.pop();
            let mut rest = after.as_slice();
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            base
        }
        child if is_mod_rs => {
            let mut p = me.to_vec();
            p.push(child.to_string());
            if files.contains_key(&p) {
                p.extend(after);
                p
            } else {
                return None;
            }
        }
        _ => return None,
    };
    file_for(files, &path)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    let mut files = BTreeMap::new();
    for p in &paths {
        let m = module_path(&src, p);
        files.insert(m, p.clone());
    }
    let mut g = BTreeMap::new();
    for (m, p) in &files {
        let text = std::fs::read_to_string(p).unwrap();
        // Unit tests at the bottom of a file may use anything.
        let text = text.split("#[cfg(test)]").next().unwrap_or("");
        let refs = if m == &["lib".to_string()] || m == &["main".to_string()] {
            BTreeSet::new() // crate roots declare and re-export everything
        } else {
            references(&files, m, text)
        };
        g.insert(m.clone(), refs);
    }
    g
}

fn shown(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn every_module_is_placed_and_no_lower_layer_uses_a_higher_one() {
    let g = graph();
    let mut problems = Vec::new();
    for (from, tos) in &g {
        let Some(lf) = layer_of(&from[0]) else {
            problems.push(format!("{} is in no layer: add it to LAYERS", shown(from)));
            continue;
        };
        for to in tos {
            let lt = layer_of(&to[0]).unwrap_or(usize::MAX);
            if lt > lf {
                problems.push(format!(
                    "{} (layer {lf}) uses {} (layer {lt})",
                    shown(from),
                    shown(to)
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_cycle_among_core_files() {
    let g = graph();
    // Depth-first search with colours; every back edge is a cycle, reported with its
    // path.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&Vec<String>, Colour> = g.keys().map(|k| (k, Colour::White)).collect();
    let mut cycles = Vec::new();
    fn visit<'a>(
        n: &'a Vec<String>,
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        colour: &mut BTreeMap<&'a Vec<String>, Colour>,
        stack: &mut Vec<&'a Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        colour.insert(n, Colour::Grey);
        stack.push(n);
        for m in g.get(n).into_iter().flatten() {
            match colour.get(m).copied().unwrap_or(Colour::Black) {
                Colour::White => visit(m, g, colour, stack, cycles),
                Colour::Grey => {
                    let at = stack.iter().position(|s| *s == m).unwrap();
                    let mut names: Vec<String> = stack[at..].iter().map(|s| shown(s)).collect();
                    names.push(shown(m));
                    cycles.push(names.join(" → "));
                }
                Colour::Black => {}
            }
        }
        stack.pop();
        colour.insert(n, Colour::Black);
    }
    let keys: Vec<&Vec<String>> = g.keys().collect();
    for k in keys {
        if colour[k] == Colour::White {
            visit(k, &g, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_reader_sees_the_references_it_must() {
    // The checker itself: a known reference from main's code is found, so a broken
    // parser cannot pass the two tests above by seeing nothing.
    let g = graph();
    let host = g.get(&vec!["host".to_string()]).expect("core/src/host.rs");
    assert!(
        host.iter().any(|m| m[0] == "resolver"),
        "host.rs must be seen to use crate::resolver: {host:?}"
    );
    let total: usize = g.values().map(|s| s.len()).sum();
    assert!(total > 20, "only {total} references found");
}

#[test]
fn grouped_and_nested_paths_are_read() {
    // `use super::{relay::pipe, command::X}` from a child names its siblings, not
    // `mod.rs`; `crate::a::b` names `a/b.rs` when it exists, else `a.rs`.
    let mut files = BTreeMap::new();
    for m in [
        &["iso"][..],
        &["iso", "relay"],
        &["iso", "command"],
        &["text"],
    ] {
        let m: Vec<String> = m.iter().map(|s| s.to_string()).collect();
        let file = if m.len() == 1 { "x/mod.rs" } else { "x/y.rs" };
        files.insert(m, PathBuf::from(file));
    }
    let me = vec!["iso".to_string(), "relay".to_string()];
    let refs = references(
        &files,
        &me,
        "use super::{command::X, relay::y};\nuse crate::text::shown;\n",
    );
    let names: Vec<String> = refs.iter().map(|m| shown(m)).collect();
    assert_eq!(names, ["iso::command", "text"]);
}
