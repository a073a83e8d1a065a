#!/usr/bin/env python3
"""Record what Linux sends for REJECT and prints for LOG, for pollwall's byte-for-byte tests.

Usage (as root, with iptables-legacy and iproute2): python3 tools/oracle/reject_log.py

Writes dataplane/src/reject/kernel-<release>.txt (REJECT replies) and
control/src/logline/kernel-<release>.txt (LOG lines) in the current directory (the repository
root), in the formats their tests read (see the comment lines at the top of each file).

How: two private namespaces pwrjA (sender, 10.9.0.1, 02:00:00:00:00:01) and pwrjB (firewall,
10.9.0.2, 02:00:00:00:00:02) joined by a veth pair whose ends are created directly inside them
(nothing is created in, or changed on, the root namespace's interfaces). Each case loads its
iptables-legacy rules in pwrjB (LOG in mangle PREROUTING, REJECT in filter INPUT), sends one
crafted frame from pwrjA with an AF_PACKET socket, captures what comes back on pwrjA, and reads
the LOG line from /dev/kmsg. LOG lines from a non-init namespace need
net.netfilter.nf_log_all_netns=1: the old value is read first and restored at the end, and the
namespaces are deleted, also on errors. Cases that elicit an ICMP error are spaced by 1.1 s so
that the kernel's per-destination ICMP rate limit (a burst of 6) never hides a reply.

Not covered: VLAN-tagged frames (the recording kernel had no CONFIG_VLAN_8021Q).
"""
import json, os, socket, struct, subprocess, sys, time, select

A, B = "pwrjA", "pwrjB"
MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
IP_A, IP_B = bytes([10, 9, 0, 1]), bytes([10, 9, 0, 2])

def run(*args, check=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{args}: {r.stderr}")
    return r

def nsrun(ns, *args, check=True):
    return run("ip", "netns", "exec", ns, *args, check=check)

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b)//2}H", b))
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return s

def ip_hdr(proto, payload_len, tos=0, ident=4321, frag=0x4000, ttl=64, src=IP_A, dst=IP_B, opts=b"", tot=None):
    ihl = 5 + len(opts) // 4
    tot = ihl * 4 + payload_len if tot is None else tot
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, tot, ident, frag, ttl, proto, 0, src, dst) + opts
    c = (~csum(h)) & 0xffff
    return h[:10] + struct.pack("!H", c) + h[12:]

def l4_csum(proto, seg, src=IP_A, dst=IP_B):
    ph = src + dst + struct.pack("!BBH", 0, proto, len(seg))
    return (~csum(ph + seg)) & 0xffff

def tcp(sport=40000, dport=7, seq=1000, ack=0, flags=0x02, win=64240, opts=b"", payload=b"", b12=None, urg=0, src=IP_A, dst=IP_B):
    doff = 5 + len(opts) // 4
    byte12 = (doff << 4) if b12 is None else b12
    h = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, byte12, flags, win, 0, urg) + opts
    seg = h + payload
    c = l4_csum(6, seg, src, dst)
    return seg[:16] + struct.pack("!H", c) + seg[18:]

def udp(sport=5000, dport=53, payload=b"query", proto=17, zero_csum=False, src=IP_A, dst=IP_B):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if zero_csum:
        return seg
    c = l4_csum(proto, seg, src, dst) or 0xffff
    return seg[:6] + struct.pack("!H", c) + seg[8:]

def icmp(t, code, rest=b"\0\0\0\0", data=b""):
    m = struct.pack("!BBH", t, code, 0) + rest + data
    c = (~csum(m)) & 0xffff
    return m[:2] + struct.pack("!H", c) + m[4:]

def eth(ip, tags=(), pad=60, dst=MAC_B):
    f = dst + MAC_A
    for tpid, tci in tags:
        f += struct.pack("!HH", tpid, tci)
    f += b"\x08\x00" + ip
    return f + b"\0" * max(0, pad - len(f))

def datagram(proto, l4, **kw):
    return ip_hdr(proto, len(l4), **kw) + l4

SYN_OPTS = bytes.fromhex("020405b40402080a9a3b4c110000000001030307")

def make_cases():
    C = []

    def case(name, frame, rules, sleep=0):
        C.append({"name": name, "frame": frame.hex(), "rules": rules, "sleep": sleep})

    def log(prefix, *flags, extra=()):
        return [*extra, ["-t", "mangle", "-A", "PREROUTING", "-j", "LOG", "--log-prefix", prefix, *flags],
                ["-A", "INPUT", "-j", "DROP"]]

    def rej(*args):
        return [["-A", "INPUT", *args]]


    syn = datagram(6, tcp(opts=SYN_OPTS, seq=0x5d4f1e7a))
    case("log_syn", eth(syn), log("pw-syn "))
    syn_ra = datagram(6, tcp(opts=SYN_OPTS, seq=0x5d4f1e7a), tos=0xb8, opts=bytes.fromhex("94040000"))
    case("log_syn_all_flags", eth(syn_ra), log("pw-all ", "--log-tcp-sequence", "--log-tcp-options", "--log-ip-options"))
    case("log_syn_ipopt_noflag", eth(syn_ra), log("pw-noopt "))
    ackpsh = datagram(6, tcp(flags=0x18, seq=1001, ack=5555, payload=b"hello\n", opts=bytes.fromhex("0101080a00000001000000ff")), ident=4322)
    case("log_ack_psh", eth(ackpsh), log("pw-ackpsh ", "--log-tcp-sequence"))
    case("log_udp", eth(datagram(17, udp())), log("pw-udp "))
    case("log_ping", eth(datagram(1, icmp(8, 0, struct.pack("!HH", 0x1234, 7), b"abcdefgh"), frag=0)), log("pw-ping "))
    inner_udp = datagram(17, udp(sport=53, dport=5000, payload=b"answer", src=IP_B, dst=IP_A), src=IP_B, dst=IP_A, ident=777)
    case("log_port_unreach_mark", eth(datagram(1, icmp(3, 3, data=inner_udp), tos=0xc0, frag=0)),
         log("pw-unreach ", extra=[["-t", "mangle", "-A", "PREROUTING", "-j", "MARK", "--set-mark", "0x2a"]]))
    case("log_frag_later", eth(datagram(17, b"0123456789abcdef", frag=185)), log("pw-frag "))
    case("log_frag_first", eth(datagram(17, udp(payload=b"x" * 24)[:16], frag=0x2000, tot=20 + 16)), log("pw-frag1 "))
    case("log_ce_df", eth(datagram(6, tcp(), frag=0xc000)), log("pw-ce "))
    trunc = datagram(6, tcp(opts=SYN_OPTS)[:10])
    case("log_tcp_incomplete", eth(trunc), log("pw-trunc "))
    case("log_ae_res", eth(datagram(6, tcp(b12=0x5f, flags=0xc2))), log("pw-ae "))
    case("log_all_tcp_flags", eth(datagram(6, tcp(flags=0xff, urg=3))), log("pw-ff "))
    case("log_macdecode", eth(datagram(17, udp())), log("pw-md ", "--log-macdecode"))
    case("log_esp", eth(datagram(50, struct.pack("!II", 0xdeadbeef, 1) + b"x" * 16)), log("pw-esp "))
    case("log_ah", eth(datagram(51, bytes([6, 4, 0, 0]) + struct.pack("!II", 0x1234, 1) + b"y" * 12)), log("pw-ah "))
    case("log_esp_short", eth(datagram(50, b"abc")), log("pw-esp2 "))
    case("log_gre", eth(datagram(47, b"\0\0\x08\0")), log("pw-gre "))
    case("log_udplite", eth(datagram(136, udp(proto=136))), log("pw-lite "))
    inner_tcp8 = datagram(6, tcp(sport=7, dport=40000, src=IP_B, dst=IP_A)[:8], src=IP_B, dst=IP_A, tot=40)
    case("log_time_exceeded_short_inner", eth(datagram(1, icmp(11, 0, data=inner_tcp8), frag=0)), log("pw-ttl "))
    inner_tcp = datagram(6, tcp(sport=7, dport=40000, src=IP_B, dst=IP_A), src=IP_B, dst=IP_A)
    case("log_frag_needed", eth(datagram(1, icmp(3, 4, struct.pack("!HH", 0, 1400), inner_tcp), frag=0)), log("pw-mtu ", "--log-tcp-sequence"))
    case("log_redirect", eth(datagram(1, icmp(5, 1, bytes([10, 9, 0, 254]), inner_udp), frag=0)), log("pw-redir "))
    case("log_param", eth(datagram(1, icmp(12, 0, bytes([20, 0, 0, 0]), inner_udp), frag=0)), log("pw-param "))
    case("log_icmp_tiny", eth(datagram(1, b"\x08\0\0\0\0\0", frag=0)), log("pw-tiny "))
    case("log_unreach_short", eth(datagram(1, icmp(3, 3, data=b"0123456789"), frag=0)), log("pw-ushort "))
    case("log_timestamp_short", eth(datagram(1, icmp(13, 0, data=b"0123"), frag=0)), log("pw-ts "))

    # REJECT
    case("rej_syn_rst", eth(syn), rej("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"))
    case("rej_ackpsh_rst", eth(ackpsh), rej("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"))
    finp = datagram(6, tcp(flags=0x09, seq=0xfffffff0, payload=b"z" * 30))
    case("rej_fin_payload_rst", eth(finp), rej("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"))
    bad = bytearray(syn); bad[-1] ^= 1
    case("rej_bad_tcp_csum", eth(bytes(bad)), rej("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"))
    case("rej_syn_bcast_mac", eth(syn, dst=b"\xff" * 6), rej("-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"))
    big = datagram(17, udp(payload=bytes(range(256)) * 3), tos=0xff, ident=999)
    case("rej_udp_big_port", eth(big), rej("-p", "udp", "-j", "REJECT"), sleep=1.1)
    case("rej_udp_small_padded", eth(datagram(17, udp(payload=b"q"))), rej("-p", "udp", "-j", "REJECT"), sleep=1.1)
    case("rej_ping_host_prohib", eth(datagram(1, icmp(8, 0, struct.pack("!HH", 0x1234, 7), b"abcdefgh"), frag=0)),
         rej("-p", "icmp", "-j", "REJECT", "--reject-with", "icmp-host-prohibited"), sleep=1.1)
    for w in ["icmp-net-unreachable", "icmp-host-unreachable", "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-admin-prohibited"]:
        case("rej_udp_" + w, eth(datagram(17, udp(payload=w.encode()))), rej("-p", "udp", "-j", "REJECT", "--reject-with", w), sleep=1.1)
    case("rej_udp_zero_csum", eth(datagram(17, udp(zero_csum=True, payload=b"nocsum"))), rej("-p", "udp", "-j", "REJECT"), sleep=1.1)
    badu = bytearray(datagram(17, udp())); badu[-1] ^= 1
    case("rej_udp_bad_csum", eth(bytes(badu)), rej("-p", "udp", "-j", "REJECT"))
    case("rej_udp_bcast_mac", eth(datagram(17, udp()), dst=b"\xff" * 6), rej("-p", "udp", "-j", "REJECT"))
    case("rej_p253_empty", eth(datagram(253, b"")), rej("-p", "253", "-j", "REJECT"), sleep=1.1)
    case("rej_p253_zeros", eth(datagram(253, b"\0" * 6)), rej("-p", "253", "-j", "REJECT"), sleep=1.1)
    case("rej_p253_random", eth(datagram(253, b"random bytes")), rej("-p", "253", "-j", "REJECT"))
    case("rej_gre_random", eth(datagram(47, b"random bytes")), rej("-p", "47", "-j", "REJECT"), sleep=1.1)
    case("rej_icmp_error_in", eth(datagram(1, icmp(3, 3, data=inner_udp), frag=0)), rej("-p", "icmp", "-j", "REJECT"))

    return C

def setup():
    for ns in (A, B):
        if ns in run("ip", "netns", "list").stdout:
            raise RuntimeError(f"{ns} exists already")
    run("ip", "netns", "add", A)
    run("ip", "netns", "add", B)
    run("ip", "-n", A, "link", "add", "pwa0", "type", "veth", "peer", "name", "pwb0", "netns", B)
    for ns, dev, mac, addr in ((A, "pwa0", "02:00:00:00:00:01", "10.9.0.1/24"), (B, "pwb0", "02:00:00:00:00:02", "10.9.0.2/24")):
        nsrun(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
        run("ip", "-n", ns, "link", "set", dev, "address", mac)
        run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
        run("ip", "-n", ns, "link", "set", dev, "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
    run("ip", "-n", B, "neigh", "replace", "10.9.0.1", "lladdr", "02:00:00:00:00:01", "dev", "pwb0", "nud", "permanent")

def teardown():
    for ns in (A, B):
        run("ip", "netns", "del", ns, check=False)

def ipt(*rules):
    for t in ("raw", "mangle", "filter"):
        nsrun(B, "iptables-legacy", "-t", t, "-F")
    for r in rules:
        nsrun(B, "iptables-legacy", *r)

def main():
    cases = make_cases()
    old = open("/proc/sys/net/netfilter/nf_log_all_netns").read().strip()
    results = []
    try:
        setup()
        open("/proc/sys/net/netfilter/nf_log_all_netns", "w").write("1")
        kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(kmsg, 0, os.SEEK_END)
        for c in cases:
            ipt(*c["rules"])
            frame = bytes.fromhex(c["frame"])
            # Send from A and capture in A, in a child process inside A.
            out = nsrun(A, sys.executable, __file__, "--send", frame.hex()).stdout
            replies = json.loads(out)
            time.sleep(0.05)
            lines = []
            for _ in range(200):
                try:
                    rec = os.read(kmsg, 8192).decode("utf-8", "replace")
                except BlockingIOError:
                    break
                meta, _, msg = rec.partition(";")
                msg = msg.rstrip("\n")
                if "IN=" in msg:
                    lines.append(msg)
            results.append({"name": c["name"], "frame": frame.hex(), "replies": replies, "log": lines})
            if c.get("sleep"):
                time.sleep(c["sleep"])
        os.close(kmsg)
    finally:
        open("/proc/sys/net/netfilter/nf_log_all_netns", "w").write(old)
        teardown()
    print("restored nf_log_all_netns =", open("/proc/sys/net/netfilter/nf_log_all_netns").read().strip())
    write_files(cases, results)


LOG_FLAGS = {"--log-tcp-sequence": 0x01, "--log-tcp-options": 0x02, "--log-ip-options": 0x04,
             "--log-uid": 0x08, "--log-macdecode": 0x20}


def write_files(cases, results):
    release = os.uname().release.split("-")[0]
    version = run("iptables-legacy", "--version").stdout.split()[1].lstrip("v")
    by_name = {c["name"]: c for c in cases}
    log_out, rej_out = [], []
    for r in results:
        c = by_name[r["name"]]
        if r["name"].startswith("log_"):
            flags, prefix, mark = 0, None, 0
            for rule in c["rules"]:
                if "LOG" in rule:
                    prefix = rule[rule.index("--log-prefix") + 1]
                    flags |= sum(LOG_FLAGS.get(a, 0) for a in rule)
                if "MARK" in rule:
                    mark = int(rule[rule.index("--set-mark") + 1], 16)
            if len(r["log"]) != 1 or not r["log"][0].startswith(prefix):
                raise RuntimeError(f"{r['name']}: expected one LOG line, got {r['log']}")
            log_out.append(f"{r['name']} {flags:#04x} {mark:#x} {r['frame']}\n{r['log'][0]}\n")
        else:
            rule = c["rules"][0]
            w = rule[rule.index("--reject-with") + 1] if "--reject-with" in rule else "icmp-port-unreachable"
            if len(r["replies"]) > 1:
                raise RuntimeError(f"{r['name']}: more than one reply")
            rep = r["replies"][0]["frame"] if r["replies"] else "-"
            rej_out.append(f"{r['name']} {w} {r['frame']} {rep}\n")
    hdr_log = f"""# LOG lines recorded from Linux {release} (nf_log_syslog, iptables-legacy {version} `-t mangle -A
# PREROUTING -j LOG`, in a private network namespace with net.netfilter.nf_log_all_netns=1) for
# frames sent over a veth pair (IN=pwb0), by tools/oracle/reject_log.py. Two lines per case:
# "name flags mark frame-hex", then the line exactly as /dev/kmsg gave it (after the ';'),
# trailing space included.
"""
    hdr_rej = f"""# REJECT replies recorded from Linux {release} (iptables-legacy {version} `-A INPUT -j REJECT`, in a
# private network namespace, frames sent over a veth pair from 10.9.0.1 to 10.9.0.2 and the
# reply captured with an AF_PACKET socket on the sender's end), by tools/oracle/reject_log.py.
# One line per case: "name reject-with original-frame-hex reply-frame-hex", "-" when the kernel
# sent nothing. ICMP errors: the IP ID (ip_select_ident) is random, so tests use the kernel's.
# Resets: captured as CHECKSUM_PARTIAL (TP_STATUS_CSUMNOTREADY), so the TCP checksum field
# holds the folded pseudo-header sum instead of the full checksum.
"""
    short = ".".join(release.split(".")[:2])
    paths = (f"control/src/logline/kernel-{short}.txt", f"dataplane/src/reject/kernel-{short}.txt")
    open(paths[0], "w").write(hdr_log + "".join(log_out))
    open(paths[1], "w").write(hdr_rej + "".join(rej_out))
    print("wrote", *paths)

def send(hexframe):
    frame = bytes.fromhex(hexframe)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind(("pwa0", 0))
    s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
    # Drain anything queued before the send.
    s.setblocking(False)
    for _ in range(100):
        try:
            s.recv(65535)
        except BlockingIOError:
            break
    s.send(frame)
    replies = []
    deadline = time.time() + 0.5
    while time.time() < deadline:
        r, _, _ = select.select([s], [], [], max(0, deadline - time.time()))
        if not r:
            break
        data, anc, _, addr = s.recvmsg(65535, 1024)
        # addr[2] is the packet type: 4 = PACKET_OUTGOING (our own frame).
        if addr[2] == 4:
            continue
        aux = {}
        for level, typ, cdata in anc:
            if level == 263 and typ == 8 and len(cdata) >= 20:
                st, ln, snap, mac, net, tci, tpid = struct.unpack("=IIIHHHH", cdata[:20])
                aux = {"status": st, "vlan_tci": tci, "vlan_tpid": tpid}
        replies.append({"frame": data.hex(), "aux": aux})
    print(json.dumps(replies))

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--send":
        send(sys.argv[2])
    elif not os.path.isdir("dataplane/src/reject") or not os.path.isdir("control/src/logline"):
        sys.exit("run from the repository root")
    else:
        main()
