//! A resolver for tests: `testkit.mode` in the host configuration picks its behaviour.
//!
//! | mode | `configure` | `targets` |
//! |---|---|---|
//! | `ok` (default) | ok | the comma-separated `testkit.targets` |
//! | `panic-configure` | panics | — |
//! | `fail-configure` | returns an error | — |
//! | `panic-targets` | ok | panics |
//! | `error` | ok | returns an error |
//! | `empty` | ok | returns no targets |
//! | `wait` | ok | sleeps through the host until cancelled |
//! | `hang` | ok | ignores cancellation: blocks for `testkit.hang_ms` (default 60 000) |
//! | `log` | ok | logs one line per level, then returns `testkit.targets` |
//! | `last-words` | ok | returns `testkit.targets`, logging `testkit last words` at warn as its very last act |
//! | `panic-drop` | ok | returns `testkit.targets`; dropping the resolver panics |
//! | `hang-configure` | blocks for `testkit.hang_ms`, ignoring cancellation | — |
//!
//! In every mode, a non-empty `testkit.provenance` is given as the answer's provenance
//! (interface 1.2), as it is.
use std::{sync::Mutex, time::Duration};

use provtarget_abi::{export_plugin, Config, Context, Error, Resolver, Settings};

pub struct TestKit {
    config: Mutex<Config>,
}

impl TestKit {
    fn get(&self, key: &str, default: &str) -> String {
        let config = self.config.lock().unwrap_or_else(|e| e.into_inner());
        config.get_or(key, default).to_string()
    }
}

impl Resolver for TestKit {
    const NAME: &'static str = "Test Kit";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "provtarget tests";
    const DESCRIPTION: &'static str = "behaviour chosen by testkit.mode";

    fn new() -> Result<Self, Error> {
        Ok(TestKit {
            config: Mutex::new(Config::default()),
        })
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config.clone();
        match self.get("testkit.mode", "ok").as_str() {
            "panic-configure" => panic!("testkit was told to panic in configure"),
            "fail-configure" => Err("testkit was told to fail in configure".into()),
            "hang-configure" => {
                let ms = self
                    .get("testkit.hang_ms", "60000")
                    .parse()
                    .unwrap_or(60_000);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Settings::new())
            }
            mode => {
                ctx.info(format!("testkit configured in mode {mode}"));
                Ok(Settings::new()
                    .with("testkit.mode", mode)
                    .with("testkit.token", "s3cr3t-token"))
            }
        }
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let listed = || -> Vec<String> {
            self.get("testkit.targets", "")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        // Interface 1.2: where the answer came from, as given (control characters
        // and all: the host bounds and escapes it).
        let provenance = self.get("testkit.provenance", "");
        if !provenance.is_empty() {
            ctx.provenance(provenance);
        }
        match self.get("testkit.mode", "ok").as_str() {
            "panic-targets" => panic!("testkit was told to panic in targets"),
            "error" => Err("testkit was told to fail".into()),
            "empty" => Ok(vec![]),
            // Keeps failing through the SDK's retry until cancelled: the host's
            // deadline error must carry this last failure.
            "retry-error" => provtarget_abi::backoff::FIVE_SEC_START_GRACE.retry(ctx, |try_| {
                Err(format!("backend unreachable on try {try_}").into())
            }),
            "wait" => loop {
                ctx.sleep(Duration::from_secs(3600))?;
            },
            "hang" => {
                let ms = self
                    .get("testkit.hang_ms", "60000")
                    .parse()
                    .unwrap_or(60_000);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(listed())
            }
            "last-words" => {
                let targets = listed();
                ctx.warn("testkit last words");
                Ok(targets)
            }
            "log" => {
                ctx.error("testkit error line");
                ctx.warn("testkit warn line");
                ctx.info("testkit info line");
                ctx.debug("testkit debug line");
                ctx.trace("testkit trace line");
                Ok(listed())
            }
            _ => Ok(listed()),
        }
    }
}

impl Drop for TestKit {
    fn drop(&mut self) {
        if self.get("testkit.mode", "") == "panic-drop" && !std::thread::panicking() {
            panic!("testkit was told to panic when dropped");
        }
    }
}

export_plugin!(TestKit);
