//! `Acme DC hints Provisioning Target`: the Choria documentation's example resolver,
//! done properly.
//!
//! It reads a JSON file (default `/etc/dc.json`) holding `{"datacenter": "<dc>"}` and
//! returns `_provision.<dc>.example.net:4222`. When the file is missing, unreadable,
//! not JSON or names no datacenter, it retries with the SDK's `backoff::FIVE_SEC.retry`
//! (Choria's FiveSec backoff; each failed try logged once through the host) until it
//! succeeds or the host cancels.
//!
//! Configuration keys (in the host's `server.conf`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.acme.dc_hint.file` | `/etc/dc.json` | the hint file |
//! | `plugin.acme.dc_hint.domain` | `_provision.{dc}.example.net` | broker name; `{dc}` is replaced by the datacenter |
//! | `plugin.acme.dc_hint.port` | `4222` | broker port |
#![forbid(unsafe_code)]

use std::{
    fmt,
    path::{Path, PathBuf},
};

use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, Config, ConfigError, ConfigKey, Context, Error, Resolver,
    Settings,
};

const FILE_KEY: &str = "plugin.acme.dc_hint.file";
const DOMAIN_KEY: &str = "plugin.acme.dc_hint.domain";
const PORT_KEY: &str = "plugin.acme.dc_hint.port";
const DEFAULT_FILE: &str = "/etc/dc.json";
const DEFAULT_DOMAIN: &str = "_provision.{dc}.example.net";
const DEFAULT_PORT: &str = "4222";

/// Resolves the provisioning broker from a datacenter hint file.
pub struct HintResolver {
    file: PathBuf,
    domain: String,
    port: u16,
}

impl Resolver for HintResolver {
    const NAME: &'static str = "Acme DC hints Provisioning Target";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const VENDOR: &'static str = "Acme";
    const DESCRIPTION: &'static str = "Provisioning broker per datacenter, from a JSON hint file";

    fn new() -> Result<Self, Error> {
        Ok(HintResolver {
            file: DEFAULT_FILE.into(),
            domain: DEFAULT_DOMAIN.into(),
            port: 4222,
        })
    }

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new(
                FILE_KEY,
                DEFAULT_FILE,
                "JSON file holding {\"datacenter\": \"<dc>\"}",
            ),
            ConfigKey::new(
                DOMAIN_KEY,
                DEFAULT_DOMAIN,
                "broker host name; {dc} is replaced by the datacenter",
            ),
            ConfigKey::new(PORT_KEY, DEFAULT_PORT, "broker port"),
        ]
    }

    fn configure(&mut self, ctx: &Context<'_>, config: &Config) -> Result<Settings, Error> {
        // The SDK's getters fall back to the defaults declared in config_keys() and
        // name the key in their errors.
        self.file = config.string(FILE_KEY).into();
        let domain = config.string(DOMAIN_KEY);
        if !domain.contains("{dc}") {
            return Err(ConfigError::new(
                DOMAIN_KEY,
                domain,
                &format!("a host name with a {{dc}} placeholder, e.g. {DEFAULT_DOMAIN}"),
            )
            .into());
        }
        self.domain = domain.into();
        self.port = config.port(PORT_KEY)?;
        ctx.debug(format!(
            "reading datacenter hints from {}",
            self.file.display()
        ));
        Ok(Settings::new()
            .with(FILE_KEY, self.file.display())
            .with(DOMAIN_KEY, &self.domain)
            .with(PORT_KEY, self.port))
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        // Choria's FiveSec backoff until the hint is readable or the host cancels;
        // each failed try is logged once, and the last one's error is kept.
        let found = FIVE_SEC.retry(ctx, |_try| Ok(vec![self.resolve()?]))?;
        ctx.provenance(format_args!(
            "datacenter hint {} over template {}:{}",
            self.file.display(),
            self.domain,
            self.port
        ));
        Ok(found)
    }
}

impl HintResolver {
    fn resolve(&self) -> Result<String, HintError> {
        let dc = read_datacenter(&self.file)?;
        Ok(format!(
            "{}:{}",
            self.domain.replace("{dc}", &dc),
            self.port
        ))
    }
}

#[derive(Debug)]
enum HintError {
    Read(PathBuf, std::io::Error),
    Json(PathBuf, serde_json::Error),
    NoDatacenter(PathBuf),
    BadDatacenter(PathBuf, String),
}

impl std::error::Error for HintError {}

impl fmt::Display for HintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HintError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            HintError::Json(p, e) => write!(
                f,
                "{} is not valid JSON ({e}); expected {{\"datacenter\": \"<dc>\"}}",
                p.display()
            ),
            HintError::NoDatacenter(p) => write!(
                f,
                "no datacenter hint in {}; expected {{\"datacenter\": \"<dc>\"}}",
                p.display()
            ),
            HintError::BadDatacenter(p, dc) => write!(
                f,
                "datacenter {dc:?} in {} is not a DNS label; use letters, digits and '-'",
                p.display()
            ),
        }
    }
}

fn read_datacenter(path: &Path) -> Result<String, HintError> {
    let data = std::fs::read(path).map_err(|e| HintError::Read(path.into(), e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&data).map_err(|e| HintError::Json(path.into(), e))?;
    let dc = value
        .get("datacenter")
        .and_then(|v| v.as_str())
        .map(str::trim)
        .unwrap_or("");
    if dc.is_empty() {
        return Err(HintError::NoDatacenter(path.into()));
    }
    let label_ok = dc.len() <= 63
        && dc.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !dc.starts_with('-')
        && !dc.ends_with('-');
    if !label_ok {
        return Err(HintError::BadDatacenter(path.into(), dc.into()));
    }
    Ok(dc.to_string())
}

export_plugin!(HintResolver);

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("dc.json");
        std::fs::write(&p, body).unwrap();
        p
    }

    #[test]
    fn reads_the_datacenter_and_rejects_bad_hints() {
        let dir = std::env::temp_dir().join(format!("dc-hint-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = write(&dir, r#"{"datacenter": " lon1 "}"#);
        assert_eq!(read_datacenter(&p).unwrap(), "lon1");
        let p = write(&dir, r#"{"datacenter": ""}"#);
        assert!(matches!(
            read_datacenter(&p),
            Err(HintError::NoDatacenter(_))
        ));
        let p = write(&dir, r#"{"dc": "lon1"}"#);
        assert!(matches!(
            read_datacenter(&p),
            Err(HintError::NoDatacenter(_))
        ));
        let p = write(&dir, "{not json");
        assert!(matches!(read_datacenter(&p), Err(HintError::Json(..))));
        let p = write(&dir, r#"{"datacenter": "evil.com:1#"}"#);
        let err = read_datacenter(&p).unwrap_err().to_string();
        assert!(err.contains("is not a DNS label"), "{err}");
        assert!(matches!(
            read_datacenter(&dir.join("missing.json")),
            Err(HintError::Read(..))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn configure_and_targets_through_the_test_kit() {
        use provtarget_abi::{testkit, LogLevel};
        let dir = std::env::temp_dir().join(format!("dc-hint-kit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = write(&dir, r#"{"datacenter": "lon1"}"#);
        let host = testkit::TestHost::new();
        let (r, settings) = testkit::configure::<HintResolver>(
            &host,
            &[(FILE_KEY, file.to_str().unwrap()), (PORT_KEY, "4223")],
        )
        .unwrap();
        assert_eq!(settings.get(DOMAIN_KEY), Some(DEFAULT_DOMAIN));
        assert_eq!(settings.get(PORT_KEY), Some("4223"));
        let ctx = host.context();
        assert_eq!(
            r.targets(&ctx).unwrap(),
            ["_provision.lon1.example.net:4223"]
        );
        assert_eq!(
            ctx.provenance_given(),
            Some(format!(
                "datacenter hint {} over template {DEFAULT_DOMAIN}:4223",
                file.display()
            ))
        );

        // A bad port is refused at configure, naming the key.
        let err = testkit::configure::<HintResolver>(&host, &[(PORT_KEY, "0")])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with(r#"plugin.acme.dc_hint.port = "0" is not valid"#),
            "{err}"
        );

        // A missing hint file is retried (it may appear later) until the host cancels.
        let host = testkit::TestHost::new()
            .instant_sleeps()
            .cancel_after_sleeps(2);
        let missing = dir.join("missing.json");
        let (r, _) =
            testkit::configure::<HintResolver>(&host, &[(FILE_KEY, missing.to_str().unwrap())])
                .unwrap();
        let err = r.targets(&host.context()).unwrap_err().to_string();
        assert!(
            err.starts_with("context canceled after 2 tries; last error: cannot read "),
            "{err}"
        );
        assert_eq!(host.lines(LogLevel::Warn).len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
