//! A hostile resolver for tests: floods the host with its answer.
//!
//! | key | default | effect |
//! |---|---|---|
//! | `flood.count` | `1` | how many targets `targets` returns (`h<i>.example:4222`) |
//! | `flood.host_len` | `0` | when above 0, every target's host is this many bytes of `a` instead |
//!
//! The host must refuse an answer over its bounds (too many targets, a host name over
//! 253 bytes) with one line that states the numbers, without printing the answer.
use std::sync::Mutex;

use provtarget_abi::{export_plugin, Config, Context, Error, Resolver, Settings};

pub struct Flood {
    config: Mutex<Config>,
}

impl Flood {
    fn number(&self, key: &str, default: usize) -> Result<usize, Error> {
        let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let value = config.get_or(key, "");
        if value.is_empty() {
            return Ok(default);
        }
        value
            .parse()
            .map_err(|_| format!("{key} {value:?} is not a number").into())
    }
}

impl Resolver for Flood {
    const NAME: &'static str = "Flood";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget tests";
    const DESCRIPTION: &'static str = "answers with flood.count targets of flood.host_len bytes";

    fn new() -> Result<Self, Error> {
        Ok(Flood {
            config: Mutex::new(Config::default()),
        })
    }

    fn configure(&mut self, _: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.clone();
        Ok(Settings::new())
    }

    fn targets(&self, _: &Context<'_>) -> Result<Vec<String>, Error> {
        let count = self.number("flood.count", 1)?;
        let host_len = self.number("flood.host_len", 0)?;
        let long_host = (host_len > 0).then(|| "a".repeat(host_len));
        Ok((0..count)
            .map(|i| match &long_host {
                Some(h) => format!("{h}:4222"),
                None => format!("h{i}.example:4222"),
            })
            .collect())
    }
}

export_plugin!(Flood);
