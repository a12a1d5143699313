//! No function over 80 lines outside tests (issue 16, item 6): each reads as one
//! idea. The check reads the workspace's Rust sources as text: a `fn` item's length
//! runs from its `fn` line to the closing brace at the same indentation; everything
//! from a file's first `#[cfg(test)]` on, test crates (`tests/` folders) and the
//! frozen fixture workspaces are left out.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// The longest a function may be, in lines.
const MAX_LINES: usize = 80;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Source files that are not tests: every `src/` below the root, outside `target/`,
/// `.git`, test crates and the legacy fixtures.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if path.is_dir() {
            let skip = ["target", ".git", "tests", "legacy-1.0", "legacy-1.1"];
            if !skip.contains(&name.as_str()) {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") && path.components().any(|c| c.as_os_str() == "src") {
            out.push(path);
        }
    }
}

/// `(name, first line, length)` of every function in `text` longer than `max`.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("#[cfg(test)]") {
            break;
        }
        let Some(name) = fn_name(line) else {
            i += 1;
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        if line.trim_end().ends_with('}') {
            i += 1; // a one-line function
            continue;
        }
        // The signature may span lines: up to the line ending in `{` (a body) or `;`
        // (a declaration without one).
        let mut open = i;
        while open < lines.len()
            && !lines[open].trim_end().ends_with('{')
            && !lines[open].trim_end().ends_with(';')
        {
            open += 1;
        }
        if open >= lines.len() || lines[open].trim_end().ends_with(';') {
            i = open + 1;
            continue;
        }
        let mut close = open + 1;
        while close < lines.len() {
            let l = lines[close];
            let own_indent = l.len() - l.trim_start().len();
            if own_indent == indent && l.trim_start().starts_with('}') {
                break;
            }
            close += 1;
        }
        let length = close - i + 1;
        if length > max {
            found.push((name, i + 1, length));
        }
        i += 1;
    }
    found
}

/// The name of the function a line starts, if it starts one.
fn fn_name(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn no_function_outside_tests_is_over_80_lines() {
    let root = root();
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 50, "only {} source files found", files.len());
    let mut long = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (name, line, length) in long_functions(&text, MAX_LINES) {
            let rel = f.strip_prefix(&root).unwrap().display();
            long.push(format!("{rel}:{line} fn {name}: {length} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_LINES} lines (split them along their concerns):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_measures_what_it_should() {
    let body: String = (0..90).map(|i| format!("    let x{i} = {i};\n")).collect();
    let text = format!(
        "pub(crate) fn long(\n    a: u8,\n) -> u8 {{\n{body}    a\n}}\n\nfn short() {{}}\n\
         trait T {{\n    fn declared(&self);\n}}\n#[cfg(test)]\nfn in_tests() {{\n{body}}}\n"
    );
    let found = long_functions(&text, MAX_LINES);
    assert_eq!(found, [("long".to_string(), 1, 95)]);
    assert!(long_functions(&text, 95).is_empty());
}
