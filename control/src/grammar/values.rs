//! Value parsers shared by the base options and the extensions (numbers, ports, addresses,
//! interfaces, protocols), with iptables' error messages.

use crate::error::{CmdError, CmdResult};
use crate::names;
use classifier::{IfaceMatch, Ipv4Net, PortRange};
use std::net::Ipv4Addr;

/// `xtables_strtoul`-style unsigned parse: decimal, `0x` hex or leading-0 octal, within [min, max].
pub fn parse_uint(s: &str, min: u64, max: u64) -> Option<u64> {
    let s = s.trim_start();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()?
    } else if s.len() > 1 && s.starts_with('0') {
        u64::from_str_radix(&s[1..], 8).ok()?
    } else {
        if s.starts_with('+') || s.starts_with('-') {
            return None;
        }
        s.parse::<u64>().ok()?
    };
    (min..=max).contains(&v).then_some(v)
}

/// A port number or a service name for `proto` (None: any protocol).
pub fn port_or_service(s: &str, proto: Option<&str>) -> Option<u16> {
    if let Some(v) = parse_uint(s, 0, 65535) {
        return Some(v as u16);
    }
    if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    names::service_port(s, proto)
}

/// `xtables_parse_port` with its message.
pub fn parse_port(s: &str, proto: Option<&str>) -> CmdResult<u16> {
    port_or_service(s, proto)
        .ok_or_else(|| CmdError::param(format!("invalid port/service `{s}' specified")))
}

/// `a`, `a:b`, `a:`, `:b`, as tcp's own parser reads them (`parse_tcp_ports`): names of
/// `proto`'s services, min ≤ max.
pub fn parse_port_range(s: &str, proto: Option<&str>) -> CmdResult<PortRange> {
    let r = port_range(s, proto)?;
    if r.lo > r.hi {
        return Err(CmdError::param("invalid portrange (min > max)"));
    }
    Ok(r)
}

/// The same as the guided option parser reads a port range (`XTTYPE_PORTRC`, udp's and
/// conntrack's ports, `xtopt_parse_mport`): a number up to 65535 (any base `strtoul` reads),
/// else `xtables_getportbyname`: `getaddrinfo`'s numeric service (decimal, truncated to 16
/// bits: 70000 is 4464) or a service name of any protocol; a reversed range is kept as written
/// (it matches nothing).
pub fn parse_port_range_rc(s: &str) -> CmdResult<PortRange> {
    let one = |p: &str| -> CmdResult<u16> {
        if let Some(v) = parse_uint(p, 0, 65535) {
            return Ok(v as u16);
        }
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            // strtoul saturates; htons keeps the low 16 bits.
            let v = p.parse::<u64>().unwrap_or(u64::MAX);
            return Ok(v as u16);
        }
        names::service_port(p, None)
            .ok_or_else(|| CmdError::param(format!("Port \"{p}\" does not resolve to anything.\n")))
    };
    match s.split_once(':') {
        None => Ok(PortRange::single(one(s)?)),
        Some((a, b)) => Ok(PortRange {
            lo: if a.is_empty() { 0 } else { one(a)? },
            hi: if b.is_empty() { 65535 } else { one(b)? },
        }),
    }
}

fn port_range(s: &str, proto: Option<&str>) -> CmdResult<PortRange> {
    match s.split_once(':') {
        None => Ok(PortRange::single(parse_port(s, proto)?)),
        Some((a, b)) => {
            let lo = if a.is_empty() {
                0
            } else {
                parse_port(a, proto)?
            };
            let hi = if b.is_empty() {
                65535
            } else {
                parse_port(b, proto)?
            };
            Ok(PortRange { lo, hi })
        }
    }
}

/// A dotted-quad IPv4 address (also `localhost` and other /etc/hosts names).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Some(a);
    }
    // iptables pads a shortened dotted quad with zeros ("10.1" = 10.1.0.0).
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() < 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let mut octets = [0u8; 4];
        for (i, p) in parts.iter().enumerate() {
            octets[i] = p.parse().ok()?;
        }
        return Some(Ipv4Addr::from(octets));
    }
    host_lookup(s)
}

fn host_lookup(name: &str) -> Option<Ipv4Addr> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|l| {
        let mut w = l.split('#').next()?.split_whitespace();
        let addr = w.next()?.parse::<Ipv4Addr>().ok()?;
        w.any(|n| n == name).then_some(addr)
    })
}

/// One `addr[/mask]` of `-s`/`-d` (mask: prefix length or dotted netmask).
pub fn parse_net(s: &str) -> CmdResult<Ipv4Net> {
    let (a, m) = match s.split_once('/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let mask = match m {
        None => Ipv4Addr::BROADCAST,
        Some(m) if m.contains('.') => m
            .parse::<Ipv4Addr>()
            .map_err(|_| CmdError::param(format!("invalid mask `{m}' specified")))?,
        Some(m) => match parse_uint(m, 0, 32) {
            Some(len) => classifier::prefix_mask(len as u8),
            None => return Err(CmdError::param(format!("invalid mask `{m}' specified"))),
        },
    };
    let addr =
        parse_ipv4(a).ok_or_else(|| CmdError::param(format!("host/network `{a}' not found")))?;
    Ok(Ipv4Net::new(addr, mask))
}

/// `-s a,b,c`: the comma list, each entry parsed; duplicates removed as iptables does.
pub fn parse_net_list(s: &str) -> CmdResult<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        out.push(parse_net(part)?);
    }
    Ok(out)
}

/// `-i`/`-o` names, with the trailing `+` wildcard.
pub fn parse_iface(s: &str) -> CmdResult<IfaceMatch> {
    if s.is_empty() {
        return Err(CmdError::param("Empty interface is likely to be undesired"));
    }
    if s.len() > IfaceMatch::MAX_LEN {
        return Err(CmdError::param(format!(
            "interface name `{s}' must be shorter than IFNAMSIZ ({})",
            IfaceMatch::MAX_LEN
        )));
    }
    match s.strip_suffix('+') {
        Some(stem) => Ok(IfaceMatch {
            name: stem.to_string(),
            wildcard: true,
        }),
        None => Ok(IfaceMatch {
            name: s.to_string(),
            wildcard: false,
        }),
    }
}

/// `-p`: name (case-insensitive), number, or `all`.
pub fn parse_protocol(s: &str) -> CmdResult<u8> {
    let lower = s.to_ascii_lowercase();
    if let Some(v) = parse_uint(&lower, 0, 255) {
        return Ok(v as u8);
    }
    if let Some(p) = names::builtin_protocol(&lower) {
        return Ok(p);
    }
    names::protocol_number(&lower)
        .ok_or_else(|| CmdError::param(format!("unknown protocol \"{s}\" specified")))
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    Some(mac)
}

/// `value[/mask]` as the mark match and MARK target read it.
pub fn parse_mark_mask(s: &str) -> Option<(u32, Option<u32>)> {
    let (v, m) = match s.split_once('/') {
        Some((v, m)) => (v, Some(m)),
        None => (s, None),
    };
    let v = parse_uint(v, 0, u64::from(u32::MAX))? as u32;
    let m = match m {
        Some(m) => Some(parse_uint(m, 0, u64::from(u32::MAX))? as u32),
        None => None,
    };
    Some((v, m))
}

/// The dotted form of an address/mask as `-S` prints it: `/len` when contiguous.
pub fn net_to_string(n: &Ipv4Net) -> String {
    match n.prefix_len() {
        Some(len) => format!("{}/{}", n.addr, len),
        None => format!("{}/{}", n.addr, n.mask),
    }
}

/// An address with an optional mask whose host bits are kept (conntrack's address options).
pub fn parse_net_unmasked(s: &str) -> CmdResult<Ipv4Net> {
    let masked = parse_net(s)?;
    let a = s.split('/').next().unwrap_or(s);
    let addr =
        parse_ipv4(a).ok_or_else(|| CmdError::param(format!("host/network `{a}' not found")))?;
    Ok(Ipv4Net {
        addr,
        mask: masked.mask,
    })
}
