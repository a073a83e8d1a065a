//! Service and protocol names (`/etc/services`, `/etc/protocols`), with a small embedded table
//! for machines that lack those files, so that port names and protocol names always work.

use std::sync::OnceLock;

struct Db {
    /// (name, port, proto) for every service name and alias, in file order.
    services: Vec<(String, u16, String)>,
    /// (name, number) for every protocol name and alias, in file order.
    protocols: Vec<(String, u8)>,
}

const FALLBACK_SERVICES: &str =
    "ftp-data 20/tcp\nftp 21/tcp\nssh 22/tcp\ntelnet 23/tcp\nsmtp 25/tcp mail\n\
domain 53/tcp\ndomain 53/udp\nbootps 67/udp\nbootpc 68/udp\ntftp 69/udp\nhttp 80/tcp www\n\
pop3 110/tcp\nntp 123/udp\nimap2 143/tcp imap\nsnmp 161/udp\nldap 389/tcp\nhttps 443/tcp\n\
https 443/udp\nsubmission 587/tcp\nimaps 993/tcp\npop3s 995/tcp\n";

const FALLBACK_PROTOCOLS: &str = "ip 0 IP\nicmp 1 ICMP\nigmp 2 IGMP\ntcp 6 TCP\nudp 17 UDP\n\
ipv6 41 IPv6\nipv6-route 43\nipv6-frag 44\ngre 47 GRE\nesp 50 IPSEC-ESP\nah 51 IPSEC-AH\n\
ipv6-icmp 58 IPv6-ICMP\nipv6-nonxt 59\nipv6-opts 60\nospf 89 OSPFIGP\nsctp 132 SCTP\n\
udplite 136 UDPLite\nmpls-in-ip 137\n";

fn db() -> &'static Db {
    static DB: OnceLock<Db> = OnceLock::new();
    DB.get_or_init(|| {
        let services =
            std::fs::read_to_string("/etc/services").unwrap_or_else(|_| FALLBACK_SERVICES.into());
        let protocols =
            std::fs::read_to_string("/etc/protocols").unwrap_or_else(|_| FALLBACK_PROTOCOLS.into());
        Db {
            services: parse_services(&services),
            protocols: parse_protocols(&protocols),
        }
    })
}

fn data_words(line: &str) -> impl Iterator<Item = &str> {
    line.split('#').next().unwrap_or("").split_whitespace()
}

fn parse_services(text: &str) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = data_words(line);
        let (Some(name), Some(pp)) = (w.next(), w.next()) else {
            continue;
        };
        let Some((port, proto)) = pp.split_once('/') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        out.push((name.to_string(), port, proto.to_string()));
        for alias in w {
            out.push((alias.to_string(), port, proto.to_string()));
        }
    }
    out
}

fn parse_protocols(text: &str) -> Vec<(String, u8)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut w = data_words(line);
        let (Some(name), Some(num)) = (w.next(), w.next()) else {
            continue;
        };
        let Ok(num) = num.parse::<u8>() else { continue };
        out.push((name.to_string(), num));
        for alias in w {
            out.push((alias.to_string(), num));
        }
    }
    out
}

/// `getservbyname(name, proto)`; `proto` None means any protocol.
pub fn service_port(name: &str, proto: Option<&str>) -> Option<u16> {
    db().services
        .iter()
        .find(|(n, _, p)| n == name && proto.is_none_or(|q| q == p))
        .map(|s| s.1)
}

/// `getservbyport(port, proto)`: the service's official name.
pub fn service_name(port: u16, proto: &str) -> Option<&'static str> {
    db().services
        .iter()
        .find(|(_, p, pr)| *p == port && pr == proto)
        .map(|s| s.0.as_str())
}

/// `getprotobyname`.
pub fn protocol_number(name: &str) -> Option<u8> {
    db().protocols.iter().find(|(n, _)| n == name).map(|p| p.1)
}

/// The name iptables prints for a protocol: its short list first, then `getprotobynumber`.
pub fn protocol_name(num: u8) -> Option<&'static str> {
    match num {
        0 => Some("all"),
        6 => Some("tcp"),
        17 => Some("udp"),
        136 => Some("udplite"),
        1 => Some("icmp"),
        58 => Some("ipv6-icmp"),
        50 => Some("esp"),
        51 => Some("ah"),
        132 => Some("sctp"),
        135 => Some("mh"),
        _ => db()
            .protocols
            .iter()
            .find(|(_, n)| *n == num)
            .map(|p| p.0.as_str()),
    }
}

/// iptables' own short list of protocol names (`xtables_chain_protos`), tried before the database.
pub fn builtin_protocol(name: &str) -> Option<u8> {
    Some(match name {
        "tcp" => 6,
        "sctp" => 132,
        "udp" => 17,
        "udplite" => 136,
        "icmp" => 1,
        "ipv6-icmp" | "icmpv6" => 58,
        "esp" => 50,
        "ah" => 51,
        "mh" | "ipv6-mh" => 135,
        "all" => 0,
        _ => return None,
    })
}

/// libxtables' built-in protocol table (iptables 1.8.10+), the only names `-L -n` prints.
pub fn xtables_protocol_name(num: u8) -> Option<&'static str> {
    Some(match num {
        0 => "all",
        6 => "tcp",
        132 => "sctp",
        17 => "udp",
        136 => "udplite",
        1 => "icmp",
        58 => "ipv6-icmp",
        50 => "esp",
        51 => "ah",
        135 => "mobility-header",
        33 => "dccp",
        108 => "ipcomp",
        _ => return None,
    })
}
