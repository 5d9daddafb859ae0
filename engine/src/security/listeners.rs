//! Listeners in Kafka's syntax (`listeners=PLAINTEXT://:9092,SASL_SSL://:9093`, with
//! `listener.security.protocol.map` and `advertised.listeners`): what each binds, what clients
//! are told, and its security protocol.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

use super::SecurityProtocol;

/// A Kafka listener: `NAME://host:port`, with its security protocol from the name or from
/// `listener.security.protocol.map` (its TLS and SASL settings are in `BrokerConfig::security`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub bind: SocketAddr,
    /// Host and port that clients are told to connect to (Metadata, FindCoordinator).
    pub advertised_host: String,
    pub advertised_port: u16,
    pub security_protocol: SecurityProtocol,
}

pub fn parse_listeners(text: &str, advertised: Option<&str>) -> Result<Vec<Listener>> {
    parse_listeners_with_map(text, advertised, &super::settings::parse_protocol_map(None)?)
}

pub fn parse_listeners_with_map(text: &str, advertised: Option<&str>, map: &BTreeMap<String, SecurityProtocol>) -> Result<Vec<Listener>> {
    let mut listeners: Vec<Listener> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let listener = parse_listener(item, Some(map))?;
        if listeners.iter().any(|l| l.name == listener.name) {
            bail!("listener name {} appears twice in listeners; each listener needs its own name", listener.name);
        }
        if listeners.iter().any(|l| l.bind.port() == listener.bind.port() && listener.bind.port() != 0) {
            bail!("listeners {item:?}: port {} is used by another listener", listener.bind.port());
        }
        listeners.push(listener);
    }
    if listeners.is_empty() {
        bail!("listeners is empty: give at least one, such as PLAINTEXT://127.0.0.1:9092");
    }
    if let Some(advertised) = advertised {
        for item in advertised.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, rest) = item.split_once("://").with_context(|| format!("advertised listener {item:?} must look like NAME://host:port"))?;
            let (host, port) = rest.rsplit_once(':').with_context(|| format!("advertised listener {item:?} has no port"))?;
            let listener = listeners.iter_mut().find(|l| l.name == name).with_context(|| format!("advertised listener {name} is not in listeners"))?;
            listener.advertised_host = host.to_string();
            listener.advertised_port = port.parse().with_context(|| format!("advertised listener {item:?} has a bad port"))?;
        }
    }
    Ok(listeners)
}

pub fn parse_listener(item: &str, map: Option<&BTreeMap<String, SecurityProtocol>>) -> Result<Listener> {
    let (name, rest) = item.split_once("://").with_context(|| format!("listener {item:?} must look like PLAINTEXT://host:port"))?;
    let security_protocol = match map {
        Some(map) => map.get(name).copied(),
        None => SecurityProtocol::parse(name),
    }
    .with_context(|| format!("listener {item:?}: {name} is not a security protocol; map it with listener.security.protocol.map={name}:SSL (or PLAINTEXT, SASL_PLAINTEXT, SASL_SSL)"))?;
    let (host, port) = rest.rsplit_once(':').with_context(|| format!("listener {item:?} has no port"))?;
    let port: u16 = port.parse().with_context(|| format!("listener {item:?} has a bad port"))?;
    let bind_host = if host.is_empty() { "0.0.0.0" } else { host.trim_start_matches('[').trim_end_matches(']') };
    let bind = (bind_host, port)
        .to_socket_addrs()
        .with_context(|| format!("listener {item:?}: cannot resolve {bind_host}"))?
        .next()
        .with_context(|| format!("listener {item:?}: {bind_host} has no address"))?;
    let advertised_host = if host.is_empty() || host == "0.0.0.0" { "127.0.0.1".to_string() } else { host.to_string() };
    Ok(Listener { name: name.to_string(), bind, advertised_host, advertised_port: port, security_protocol })
}
