//! `Acme DC hints Provisioning Target`: the Choria documentation's example resolver,
//! done properly.
//!
//! It reads a JSON file (default `/etc/dc.json`) holding `{"datacenter": "<dc>"}` and
//! returns `_provision.<dc>.example.net:4222`. When the file is missing, unreadable,
//! not JSON or names no datacenter, it logs the error through the host, sleeps with
//! Choria's FiveSec backoff and tries again, until it succeeds or the host cancels.
//!
//! Configuration keys (in the host's `server.conf`):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `plugin.acme.dc_hint.file` | `/etc/dc.json` | the hint file |
//! | `plugin.acme.dc_hint.domain` | `_provision.{dc}.example.net` | broker name; `{dc}` is replaced by the datacenter |
//! | `plugin.acme.dc_hint.port` | `4222` | broker port |

use std::{
    fmt,
    path::{Path, PathBuf},
};

use provtarget_abi::{
    backoff::FIVE_SEC, export_plugin, Cancelled, Config, ConfigKey, Context, Error, Resolver,
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
        self.file = config.get_or(FILE_KEY, DEFAULT_FILE).into();
        let domain = config.get_or(DOMAIN_KEY, DEFAULT_DOMAIN);
        if !domain.contains("{dc}") {
            return Err(format!(
                "{DOMAIN_KEY} = {domain:?} has no {{dc}} placeholder; use e.g. {DEFAULT_DOMAIN}"
            )
            .into());
        }
        self.domain = domain.into();
        let port = config.get_or(PORT_KEY, DEFAULT_PORT);
        self.port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(format!(
                    "{PORT_KEY} = {port:?} is not a port; use a number from 1 to 65535"
                )
                .into())
            }
        };
        ctx.debug(format!(
            "reading datacenter hints from {}",
            self.file.display()
        ));
        Ok(vec![
            (FILE_KEY.into(), self.file.display().to_string()),
            (DOMAIN_KEY.into(), self.domain.clone()),
            (PORT_KEY.into(), self.port.to_string()),
        ])
    }

    fn targets(&self, ctx: &Context<'_>) -> Result<Vec<String>, Error> {
        let mut try_ = 1;
        loop {
            if ctx.is_cancelled() {
                return Err(Cancelled.into());
            }
            match self.resolve() {
                Ok(target) => return Ok(vec![target]),
                Err(e) => ctx.error(format!("Could not resolve provisioning targets: {e}")),
            }
            let pause = FIVE_SEC.duration(try_);
            ctx.info(format!(
                "Sleeping {} ms before trying to resolve provisioning target again",
                pause.as_millis()
            ));
            ctx.sleep(pause)?;
            try_ += 1;
        }
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
}
