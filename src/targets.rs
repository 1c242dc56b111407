//! Where a route may point. A target can name anything the proxy can reach, so two kinds
//! are refused: addresses in the upstream deny list (`CERYX_UPSTREAM_DENY`; the proxy
//! never connects there, whatever the route), and the proxy's own listeners (every
//! request would come back to the proxy: a loop).

use crate::route::Upstream;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// The default `CERYX_UPSTREAM_DENY`: link-local addresses, where cloud metadata services
/// answer with instance credentials (169.254.169.254 on AWS, GCP, Azure and most others;
/// fd00:ec2::254 is AWS's IPv6 one). Loopback and private ranges stay allowed: that is
/// where upstreams live (Pods, Services, processes beside the proxy).
pub const DEFAULT_DENY: [IpNet; 3] = [
    IpNet::V4(ipnet::Ipv4Net::new_assert(
        Ipv4Addr::new(169, 254, 0, 0),
        16,
    )),
    IpNet::V6(ipnet::Ipv6Net::new_assert(
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
    )),
    IpNet::V6(ipnet::Ipv6Net::new_assert(
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        128,
    )),
];

/// The range of `deny` that holds `ip`, if any (an IPv4-mapped IPv6 address counts as
/// its IPv4 address).
pub fn denied(deny: &[IpNet], ip: IpAddr) -> Option<&IpNet> {
    let ip = ip.to_canonical();
    deny.iter().find(|net| net.contains(&ip))
}

/// What the REST API refuses as a proxied route's target.
#[derive(Debug, Clone, Default)]
pub struct TargetRules {
    /// `CERYX_UPSTREAM_DENY`.
    pub deny: Vec<IpNet>,
    /// The proxy's listen addresses, when the API runs in the proxy's process.
    pub listeners: Vec<SocketAddr>,
}

impl TargetRules {
    /// Why `target` may not be proxied to, if it may not. Only address literals (and
    /// `localhost`) are judged: a name can resolve elsewhere tomorrow, so for names the
    /// proxy's own checks apply when it connects (the deny list, and `508` for loops).
    pub fn refusal(&self, target: &Upstream) -> Option<String> {
        let host = target.authority.host();
        let ip = match crate::route::bare_host(host).parse() {
            Ok(ip) => ip,
            Err(_) if host.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Err(_) => return None,
        };
        if let Some(net) = denied(&self.deny, ip) {
            return Some(format!(
                "{ip} is in CERYX_UPSTREAM_DENY ({net}): the proxy never connects there."
            ));
        }
        let (ip, port) = (ip.to_canonical(), target.port());
        let listener = self.listeners.iter().find(|listener| {
            listener.port() == port
                && match listener.ip() {
                    // 0.0.0.0 takes IPv4 only; [::] takes both (Linux's default).
                    IpAddr::V4(any) if any.is_unspecified() => ip.is_ipv4() && is_local(ip),
                    IpAddr::V6(any) if any.is_unspecified() => is_local(ip),
                    own => own.to_canonical() == ip,
                }
        })?;
        Some(format!(
            "{ip}:{port} is this proxy's own listener ({listener}): every request would loop."
        ))
    }
}

/// Whether `ip` is an address of this machine: loopback, unspecified, or one a socket
/// can be bound to (the kernel's own answer, without listing interfaces).
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(target: &str) -> Upstream {
        Upstream::parse(target).unwrap()
    }

    #[test]
    fn metadata_addresses_are_denied_by_default() {
        for ip in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.1.1",
        ] {
            assert!(denied(&DEFAULT_DENY, ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1"] {
            assert!(denied(&DEFAULT_DENY, ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[test]
    fn the_proxys_own_listeners_and_denied_literals_are_refused() {
        let rules = TargetRules {
            deny: DEFAULT_DENY.to_vec(),
            listeners: vec![
                "0.0.0.0:8080".parse().unwrap(),
                "[::1]:8443".parse().unwrap(),
            ],
        };
        for refused in [
            "http://127.0.0.1:8080",
            "localhost:8080/x",
            "http://127.0.0.2:8080",
            "https://[::1]:8443",
            "http://169.254.169.254/latest/meta-data",
        ] {
            assert!(rules.refusal(&upstream(refused)).is_some(), "{refused}");
        }
        for allowed in [
            "http://127.0.0.1:8081",
            "http://[::1]:8080",
            "http://example.com:8080",
            "http://127.0.0.1",
            "https://10.1.2.3:8443",
        ] {
            assert_eq!(rules.refusal(&upstream(allowed)), None, "{allowed}");
        }
        let message = rules.refusal(&upstream("127.0.0.1:8080")).unwrap();
        assert!(message.contains("own listener (0.0.0.0:8080)"), "{message}");
    }
}
