//! `provtarget-docgen OUT_DIR`: writes the man pages (`OUT_DIR/man/*.1`, one for the
//! command and one for each subcommand) and the shell completions
//! (`OUT_DIR/completions/provtarget.bash`, `_provtarget`, `provtarget.fish`) of
//! `provtarget`, generated from its clap definition ([`provtarget::cli::command`]) at
//! package build time, so they never disagree with the binary.

#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: provtarget-docgen OUT_DIR (writes OUT_DIR/man and OUT_DIR/completions)");
        return ExitCode::from(2);
    };
    match provtarget_docgen::generate(&PathBuf::from(out)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("provtarget-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}
