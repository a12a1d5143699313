//! Man pages and shell completions of `provtarget`, generated from its clap definition
//! ([`provtarget::cli::command`]) by clap_mangen and clap_complete. The packaging
//! scripts (`packaging/deb.sh`, `packaging/rpm.sh`) run the `provtarget-docgen` binary
//! at build time; nothing here is written by hand.

#![deny(missing_docs)]

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// The command's name: the binary, the man page `provtarget.1`, the completions.
pub const BIN: &str = "provtarget";

/// The completion file for `shell`, named as each shell's packaged completion directory
/// expects (`/usr/share/bash-completion/completions/provtarget`, zsh's
/// `vendor-completions/_provtarget`, fish's `vendor_completions.d/provtarget.fish`).
pub fn completion_file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "provtarget",
        Shell::Zsh => "_provtarget",
        Shell::Fish => "provtarget.fish",
        _ => "provtarget.other",
    }
}

/// The shells completions are generated for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Every man page: `(file name, roff text)`, one for the command and one for each
/// subcommand at any depth (`provtarget-plugins-check.1`), clap's `help` and hidden
/// subcommands left out.
pub fn man_pages() -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = provtarget::cli::command();
    // Fills in display names (`provtarget-plugins-check`) and bin names
    // (`provtarget plugins check`) for every subcommand.
    cmd.build();
    let mut pages = Vec::new();
    collect(&cmd, &mut pages)?;
    Ok(pages)
}

fn collect(cmd: &Command, pages: &mut Vec<(String, Vec<u8>)>) -> io::Result<()> {
    let title = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    let mut roff = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(title.clone())
        .section("1")
        .source(format!(
            "{BIN} {}",
            cmd.get_version().unwrap_or(env!("CARGO_PKG_VERSION"))
        ))
        .manual("provtarget manual")
        .render(&mut roff)?;
    pages.push((format!("{title}.1"), roff));
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        collect(sub, pages)?;
    }
    Ok(())
}

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = provtarget::cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    out
}

/// Writes `out/man/<page>.1` and `out/completions/<file>` and returns the paths written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>, String> {
    let man = out.join("man");
    let comp = out.join("completions");
    for d in [&man, &comp] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let mut written = Vec::new();
    let pages = man_pages().map_err(|e| format!("cannot render the man pages: {e}"))?;
    for (name, roff) in pages {
        let p = man.join(name);
        fs::write(&p, roff).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        written.push(p);
    }
    for shell in SHELLS {
        let p = comp.join(completion_file_name(shell));
        fs::write(&p, completion(shell))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_man_page_for_the_command_and_each_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "provtarget.1",
                "provtarget-buildinfo.1",
                "provtarget-targets.1",
                "provtarget-plugins.1",
                "provtarget-plugins-check.1"
            ]
        );
        let targets = String::from_utf8(pages[2].1.clone()).unwrap();
        assert!(targets.contains(".TH provtarget-targets 1"), "{targets}");
        assert!(targets.contains("timeout"), "{targets}");
        let top = String::from_utf8(pages[0].1.clone()).unwrap();
        assert!(top.contains(env!("CARGO_PKG_VERSION")), "{top}");
    }

    #[test]
    fn completions_know_every_subcommand_and_flag() {
        for shell in SHELLS {
            let text = String::from_utf8(completion(shell)).unwrap();
            for word in [
                "buildinfo",
                "targets",
                "plugins",
                "check",
                // Flags without their dashes: fish writes `-l plugin-dir`.
                "plugin-dir",
                "insecure-skip-owner-checks",
                "json",
            ] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }
}
