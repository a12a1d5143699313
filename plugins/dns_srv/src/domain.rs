//! The host's DNS domain, for the `{domain}` placeholder of the SRV name.
//!
//! In order: the kernel host name when it holds a dot (`web1.lon1.example.net` →
//! `lon1.example.net`); else the canonical name `/etc/hosts` gives the host name, when
//! it holds a dot; else the first search domain (`/etc/resolv.conf`'s `search` and
//! `domain` lines) under which DNS knows the host name (an A or AAAA record).

use std::path::Path;

/// Where the host's names come from; fixed files on a real host, others in tests.
#[derive(Debug, Clone)]
pub(crate) struct Sources<'a> {
    /// Files holding the host name, first readable wins.
    pub(crate) hostname_files: &'a [&'a str],
    /// The hosts file.
    pub(crate) hosts_file: &'a str,
}

/// The files of a Linux host.
pub(crate) const SYSTEM: Sources<'static> = Sources {
    hostname_files: &["/proc/sys/kernel/hostname", "/etc/hostname"],
    hosts_file: "/etc/hosts",
};

/// How the domain was found, or what was learnt on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Local {
    /// The domain, and where it came from.
    Found(String, &'static str),
    /// No domain in the files; DNS may still know: the short host name.
    ShortName(String),
}

/// The domain from the host name or `/etc/hosts`, or the short host name to ask DNS
/// about.
pub(crate) fn from_files(sources: &Sources<'_>) -> Result<Local, String> {
    let hostname = sources
        .hostname_files
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .map(|s| s.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            format!(
                "cannot read the host name from {}",
                sources.hostname_files.join(" or ")
            )
        })?;
    if let Some((_, domain)) = hostname.split_once('.') {
        return Ok(Local::Found(domain.to_string(), "the host name"));
    }
    if let Ok(hosts) = std::fs::read_to_string(Path::new(sources.hosts_file)) {
        if let Some(fqdn) = fqdn_from_hosts(&hosts, &hostname) {
            if let Some((_, domain)) = fqdn.split_once('.') {
                return Ok(Local::Found(domain.to_string(), "/etc/hosts"));
            }
        }
    }
    Ok(Local::ShortName(hostname))
}

/// The first name holding a dot on a hosts-file line that lists `short`, canonical
/// name first (`10.0.0.5 web1.lon1.example.net web1`).
pub(crate) fn fqdn_from_hosts(hosts: &str, short: &str) -> Option<String> {
    hosts.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let _address = fields.next()?;
        let names: Vec<String> = fields
            .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
            .collect();
        let listed = names
            .iter()
            .any(|n| n == short || n.split_once('.').is_some_and(|(host, _)| host == short));
        if !listed {
            return None;
        }
        names
            .into_iter()
            .find(|n| n.split_once('.').is_some_and(|(host, _)| host == short))
    })
}

/// `/etc/resolv.conf`'s search domains (its `domain` first), lower case, no trailing dot.
pub(crate) fn search_domains() -> Vec<String> {
    let Ok((config, _)) = hickory_resolver::system_conf::read_system_conf() else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for name in config.domain().into_iter().chain(config.search()) {
        let text = name.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        if !text.is_empty() && !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_give_the_canonical_name() {
        let hosts = "\
127.0.0.1 localhost
# 10.0.0.9 web1.wrong.example
10.0.0.5\tweb1.lon1.example.net  web1   # the box
10.0.0.6 web2 web2.par1.example.net
";
        assert_eq!(
            fqdn_from_hosts(hosts, "web1").as_deref(),
            Some("web1.lon1.example.net")
        );
        assert_eq!(
            fqdn_from_hosts(hosts, "web2").as_deref(),
            Some("web2.par1.example.net")
        );
        assert_eq!(fqdn_from_hosts(hosts, "web3"), None);
        assert_eq!(fqdn_from_hosts("127.0.0.1 vm\n", "vm"), None);
        // A name that merely starts with the short name is not it.
        assert_eq!(fqdn_from_hosts("10.0.0.7 web10.x.net\n", "web1"), None);
    }

    fn files(label: &str, hostname: &str, hosts: &str) -> (std::path::PathBuf, String, String) {
        let dir = std::env::temp_dir().join(format!("dns-srv-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = dir.join("hostname");
        std::fs::write(&h, hostname).unwrap();
        let hs = dir.join("hosts");
        std::fs::write(&hs, hosts).unwrap();
        (
            dir.clone(),
            h.display().to_string(),
            hs.display().to_string(),
        )
    }

    #[test]
    fn the_host_name_then_the_hosts_file_give_the_domain() {
        let (dir, h, hs) = files("a", "Web1.Lon1.Example.NET\n", "");
        let sources = Sources {
            hostname_files: &["/nonexistent/hostname", h.as_str()],
            hosts_file: &hs,
        };
        assert_eq!(
            from_files(&sources).unwrap(),
            Local::Found("lon1.example.net".into(), "the host name")
        );

        std::fs::write(&h, "web1\n").unwrap();
        std::fs::write(&hs, "10.0.0.5 web1.par1.example.net web1\n").unwrap();
        assert_eq!(
            from_files(&sources).unwrap(),
            Local::Found("par1.example.net".into(), "/etc/hosts")
        );

        std::fs::write(&hs, "127.0.0.1 localhost web1\n").unwrap();
        assert_eq!(
            from_files(&sources).unwrap(),
            Local::ShortName("web1".into())
        );

        let none = Sources {
            hostname_files: &["/nonexistent/hostname"],
            hosts_file: &hs,
        };
        let err = from_files(&none).unwrap_err();
        assert!(err.contains("cannot read the host name"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
