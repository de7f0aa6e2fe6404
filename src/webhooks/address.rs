//! Where a webhook may point: an `http` or `https` URL whose host is a public address. Private,
//! loopback, link-local, unspecified, multicast and reserved addresses are refused (server-side
//! request forgery), unless the host is named in `WEBHOOK_ALLOWED_HOSTS`.
//!
//! Checked twice: when a webhook is created ([`check_url`]), and at every send, where the
//! sender resolves the host through [`GuardedResolver`] and connects only to the addresses it
//! checked, so a name that later resolves (rebinds) to a private address is refused too.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use url::{Host, Url};

use crate::{
    config::Config,
    primitives::hosts::{is_public, normalize_host},
};

/// How long creating a webhook waits for its host name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The host of `url` as [`normalize_host`] writes it.
fn host_key(host: &Host<&str>) -> String {
    match host {
        Host::Domain(name) => normalize_host(name),
        Host::Ipv4(address) => address.to_string(),
        Host::Ipv6(address) => address.to_string(),
    }
}

/// Whether `WEBHOOK_ALLOWED_HOSTS` names the host.
fn is_allowed(config: &Config, host: &Host<&str>) -> bool {
    let key = host_key(host);
    config.webhook_allowed_hosts.contains(&key)
}

/// Names that always mean this machine (RFC 6761), whatever a resolver says.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Why a stored or new webhook URL may not be called, or `Ok` with the parsed URL.
fn parse(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|_| "url must be an absolute http(s) URL".to_owned())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must use http or https".into());
    }
    if parsed.host().is_none() {
        return Err("url must name a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // It would be shown to every operator; receivers authenticate by the signature.
        return Err("url must not carry a user name or password".into());
    }
    Ok(parsed)
}

const PRIVATE_ADDRESS: &str = "url points to a private, loopback or otherwise internal address; \
                               name its host in WEBHOOK_ALLOWED_HOSTS to allow it";

/// Checks a new webhook's URL: its form, and that its host is not (and does not resolve to) an
/// internal address, unless allowed. A name that does not resolve now is accepted: every send
/// checks again.
pub async fn check_url(config: &Config, url: &str) -> Result<(), String> {
    let parsed = parse(url)?;
    let host = parsed.host().expect("parse checked the host");
    if is_allowed(config, &host) {
        return Ok(());
    }
    match host {
        Host::Ipv4(address) if !is_public(address.into()) => Err(PRIVATE_ADDRESS.into()),
        Host::Ipv6(address) if !is_public(address.into()) => Err(PRIVATE_ADDRESS.into()),
        Host::Domain(name) if is_local_name(name) => Err(PRIVATE_ADDRESS.into()),
        Host::Domain(name) => {
            let port = parsed.port_or_known_default().unwrap_or(80);
            let resolved =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port))).await;
            match resolved {
                Ok(Ok(addresses)) => {
                    let addresses: Vec<SocketAddr> = addresses.collect();
                    if addresses.iter().any(|address| !is_public(address.ip())) {
                        Err(PRIVATE_ADDRESS.into())
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Checks, just before a send, a URL whose host is an address (those are not resolved, so
/// [`GuardedResolver`] never sees them).
pub fn check_before_send(config: &Config, url: &str) -> Result<Url, String> {
    let parsed = parse(url)?;
    let host = parsed.host().expect("parse checked the host");
    if is_allowed(config, &host) {
        return Ok(parsed);
    }
    let refused = match host {
        Host::Ipv4(address) => !is_public(address.into()),
        Host::Ipv6(address) => !is_public(address.into()),
        Host::Domain(name) => is_local_name(name),
    };
    if refused {
        Err(PRIVATE_ADDRESS.into())
    } else {
        Ok(parsed)
    }
}

/// Resolves host names for the webhook client and refuses a name any of whose addresses is
/// internal (unless the name is allowed). The client connects only to the addresses returned
/// here, so what was checked is what is reached.
pub struct GuardedResolver {
    allowed_hosts: Arc<Vec<String>>,
}

impl GuardedResolver {
    pub fn new(config: &Config) -> Self {
        GuardedResolver {
            allowed_hosts: Arc::new(config.webhook_allowed_hosts.clone()),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed_hosts.contains(&normalize_host(name.as_str()));
        let name = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: the client puts in the URL's port.
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            if !allowed && addresses.iter().any(|address| !is_public(address.ip())) {
                return Err(PRIVATE_ADDRESS.into());
            }
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_this_machine_are_local_whatever_their_case() {
        assert!(is_local_name("localhost"));
        assert!(is_local_name("LocalHost."));
        assert!(is_local_name("api.localhost"));
        assert!(!is_local_name("localhost.example"));
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_of_a_loopback_address_unless_it_is_allowed() {
        use reqwest::dns::Resolve;
        let config = Config::from_lookup(|_| None).unwrap();
        let refused = GuardedResolver::new(&config)
            .resolve("localhost".parse().unwrap())
            .await;
        assert!(refused.is_err());
        let config = Config::from_lookup(|name| {
            (name == "WEBHOOK_ALLOWED_HOSTS").then(|| "LocalHost".to_owned())
        })
        .unwrap();
        let mut resolved = GuardedResolver::new(&config)
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap();
        assert!(resolved.all(|address| address.ip().is_loopback()));
    }
}
