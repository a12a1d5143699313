//! Records the compiler and target this crate (and so the plugin linking it) is built
//! with: `buildinfo` shows them as build canaries next to the host's own.
use std::{env, process::Command};

fn main() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PROVTARGET_BUILD_RUSTC={version}");
    println!(
        "cargo:rustc-env=PROVTARGET_BUILD_TARGET={}",
        env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );
    println!("cargo:rerun-if-env-changed=RUSTC");
}
