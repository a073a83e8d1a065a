//! The fragmenting half of the output path, ported from Linux 6.12 `net/ipv4/ip_output.c`
//! (`__ip_finish_output`, `ip_fragment`, `ip_do_fragment` with `ip_fraglist_*` and
//! `ip_frag_*`), `ip_forward.c` (`ip_exceeds_mtu`) and `ip_options.c`
//! (`ip_options_fragment`).
//!
//! # Decisions
//!
//! A forwarded datagram goes through [`ip_exceeds_mtu`] in `ip_forward` (ICMP "fragmentation
//! needed" with the MTU if it says so), then `__ip_finish_output`: it is fragmented if it is
//! longer than the MTU **or if it was reassembled at all** (`frag_max_size != 0`: a reassembled
//! datagram is always refragmented, to at most its largest original fragment), and
//! `ip_fragment` refuses (ICMP again) a DF datagram unless `ignore_df` is set (conntrack
//! reassembly sets it) and its largest original fragment fits. [`forward_action`] combines
//! both; [`output_action`] is the second half alone (locally generated datagrams). GSO is not
//! modelled.
//!
//! # Fragmenting ([`Fragmenter::fragment`], `ip_do_fragment`)
//!
//! The MTU is lowered to `frag_max_size` when that is set and smaller; an MTU below the header
//! plus 8 bytes fails (`-EMSGSIZE`: dropped, no ICMP). Then:
//!
//! - **Fast path** (the skb still has the frag_list reassembly built, and its geometry fits):
//!   the original fragment boundaries are reproduced. Given the datagram's original fragment
//!   lengths ([`super::Reassembled::fragments`]) it is taken when there are at least two, the
//!   first is a multiple of 8 and fits the data space, every other one fits and all but the last
//!   are multiples of 8, and the datagram is not itself a fragment. Headers: the first fragment
//!   gets the datagram's header with `frag_off = MF` only (**DF is cleared**, as
//!   `ip_fraglist_init` does), the others a copy of the previous fragment's header with their
//!   offset and MF (none on the last); non-copied options are replaced by NOOPs from the second
//!   fragment on. The kernel also requires headroom and no clones/sharing; a dataplane has the
//!   bytes, so those conditions are taken as met.
//! - **Slow path** otherwise: pieces of `mtu - hlen` bytes rounded down to a multiple of 8
//!   (the last takes the rest); each fragment gets the header (options NOOPed after the first,
//!   the header length unchanged: `ip_options_fragment` overwrites rather than removes), its
//!   offset (the datagram's own offset added, for fragmenting a fragment), MF unless it is the
//!   last piece of a datagram that had MF clear, and DF exactly when `frag_pmtu`
//!   (`IPSKB_FRAG_PMTU`); the reserved bit is cleared. Every header's checksum is recomputed.
//!
//! The options processing that `ip_forward_finish` does before output (record route,
//! timestamps, `ip_forward_options`) and the TTL decrement are the caller's, before calling
//! [`Fragmenter::fragment`]. Option NOOPing assumes the options were compiled on receive
//! (`IPCB(skb)->opt.optlen = ihl * 4 - 20`), which holds for every forwarded datagram.

use super::{put16, set_checksum, FragMeta, Hdr, IP_DF, IP_MF, IP_OFFSET};

/// What the output path does with a datagram of a given length for an MTU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputAction {
    /// Send as is.
    Send,
    /// Fragment it ([`Fragmenter::fragment`]).
    Fragment,
    /// Drop it and send ICMP destination unreachable / fragmentation needed with this next-hop
    /// MTU (`IPSTATS_MIB_FRAGFAILS`).
    FragNeeded { mtu: u32 },
}

/// `ip_forward.c`'s `ip_exceeds_mtu` (GSO aside) for a datagram of `len` bytes with DF `df`.
pub fn ip_exceeds_mtu(len: usize, df: bool, meta: &FragMeta, mtu: u32) -> bool {
    if len as u64 <= u64::from(mtu) {
        return false;
    }
    if !df {
        return false;
    }
    // Original fragment exceeds the MTU and DF is set.
    if u32::from(meta.frag_max_size) > mtu {
        return true;
    }
    if meta.ignore_df {
        return false;
    }
    true
}

/// `__ip_finish_output` + `ip_fragment` (GSO aside): send, fragment, or refuse with ICMP.
pub fn output_action(len: usize, df: bool, meta: &FragMeta, mtu: u32) -> OutputAction {
    if len as u64 > u64::from(mtu) || meta.frag_max_size != 0 {
        if !df {
            return OutputAction::Fragment;
        }
        if !meta.ignore_df || (meta.frag_max_size != 0 && u32::from(meta.frag_max_size) > mtu) {
            return OutputAction::FragNeeded { mtu };
        }
        return OutputAction::Fragment;
    }
    OutputAction::Send
}

/// The forwarding path: `ip_forward`'s MTU check, then [`output_action`].
pub fn forward_action(len: usize, df: bool, meta: &FragMeta, mtu: u32) -> OutputAction {
    if ip_exceeds_mtu(len, df, meta, mtu) {
        return OutputAction::FragNeeded { mtu };
    }
    output_action(len, df, meta, mtu)
}

/// `ip_options_fragment`: overwrites the options (the bytes after the fixed header) that must
/// not be copied into non-first fragments with NOOPs; stops at END or at a malformed option.
pub fn ip_options_fragment(opts: &mut [u8]) {
    let mut l = opts.len();
    let mut p = 0usize;
    while l > 0 {
        match opts[p] {
            0 => return, // IPOPT_END
            1 => {
                // IPOPT_NOOP
                l -= 1;
                p += 1;
                continue;
            }
            _ => {}
        }
        // The kernel reads optptr[1] even when one byte is left; any value is then < 2 or > l.
        if l < 2 {
            return;
        }
        let optlen = usize::from(opts[p + 1]);
        if optlen < 2 || optlen > l {
            return;
        }
        if opts[p] & 0x80 == 0 {
            opts[p..p + optlen].fill(1);
        }
        l -= optlen;
        p += optlen;
    }
}

/// Why a datagram could not be fragmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FragError {
    /// Not a well-formed IPv4 datagram (lengths, version).
    Malformed,
    /// The MTU (after `frag_max_size`) is below the header plus 8 bytes (`-EMSGSIZE`).
    MtuTooSmall,
}

/// Result of a fragmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragDone {
    /// Fragments emitted.
    pub fragments: u32,
    /// Whether the fast path (original boundaries) was taken.
    pub fast_path: bool,
}

/// `ip_do_fragment` with its own fragment buffer (no allocation per call).
pub struct Fragmenter {
    buf: Vec<u8>,
}

impl Default for Fragmenter {
    fn default() -> Fragmenter {
        Fragmenter::new()
    }
}

impl Fragmenter {
    pub fn new() -> Fragmenter {
        Fragmenter {
            buf: vec![0u8; 65535],
        }
    }

    /// Fragments `datagram` (read up to its total length) for `mtu`, handing each fragment to
    /// `out` in order. `meta` is the datagram's [`FragMeta`] (default if it was not
    /// reassembled); `layout` the payload lengths of its original fragments, if it was
    /// reassembled and its data was not resized since (enables the fast path).
    ///
    /// A datagram that fits is emitted as one packet (with its `frag_off` rebuilt: DF only if
    /// `frag_pmtu`), as `ip_do_fragment` does when `__ip_finish_output` calls it only because
    /// `frag_max_size` is set.
    pub fn fragment<F: FnMut(&[u8])>(
        &mut self,
        datagram: &[u8],
        meta: &FragMeta,
        mtu: u32,
        layout: Option<&[u16]>,
        mut out: F,
    ) -> Result<FragDone, FragError> {
        let h = Hdr::parse(datagram).ok_or(FragError::Malformed)?;
        let dg = &datagram[..h.tot_len];
        let mut mtu = mtu;
        if meta.frag_max_size != 0 && u32::from(meta.frag_max_size) < mtu {
            mtu = u32::from(meta.frag_max_size);
        }
        let hlen = h.ihl as u32;
        if mtu < hlen + 8 {
            return Err(FragError::MtuTooSmall);
        }
        let mtu_data = mtu - hlen;
        if let Some(layout) = layout {
            if fast_path_ok(&h, mtu_data, layout) {
                let n = fast_path(&mut self.buf, dg, &h, layout, &mut out);
                return Ok(FragDone {
                    fragments: n,
                    fast_path: true,
                });
            }
        }
        let n = slow_path(&mut self.buf, dg, &h, mtu_data, meta.frag_pmtu, &mut out);
        Ok(FragDone {
            fragments: n,
            fast_path: false,
        })
    }
}

/// The frag_list geometry checks of `ip_do_fragment` (plus consistency of `layout` with the
/// datagram, which the kernel's frag_list has by construction).
fn fast_path_ok(h: &Hdr, mtu_data: u32, layout: &[u16]) -> bool {
    if layout.len() < 2 {
        return false;
    }
    let total: u64 = layout.iter().map(|&l| u64::from(l)).sum();
    if total != (h.tot_len - h.ihl) as u64 || layout.contains(&0) {
        return false;
    }
    let first = u32::from(layout[0]);
    if first > mtu_data || first & 7 != 0 || h.is_fragment() {
        return false;
    }
    let n = layout.len();
    for (i, &l) in layout.iter().enumerate().skip(1) {
        let l = u32::from(l);
        let has_next = i + 1 < n;
        if l > mtu_data || (l & 7 != 0 && has_next) {
            return false;
        }
    }
    true
}

/// Copies `hdr` and `data` into `buf` and hands the fragment out.
fn emit<F: FnMut(&[u8])>(buf: &mut [u8], hdr: &[u8], data: &[u8], out: &mut F) {
    let hl = hdr.len();
    let total = hl + data.len();
    buf[..hl].copy_from_slice(hdr);
    buf[hl..total].copy_from_slice(data);
    out(&buf[..total]);
}

/// `ip_fraglist_init` / `ip_fraglist_prepare`: one fragment per original fragment.
fn fast_path<F: FnMut(&[u8])>(
    buf: &mut [u8],
    dg: &[u8],
    h: &Hdr,
    layout: &[u16],
    out: &mut F,
) -> u32 {
    let hlen = h.ihl;
    let n = layout.len();
    let mut hdr = [0u8; 60];
    hdr[..hlen].copy_from_slice(&dg[..hlen]);

    // The head: the datagram's header, frag_off = MF.
    let l0 = usize::from(layout[0]);
    put16(&mut hdr, 2, (hlen + l0) as u16);
    put16(&mut hdr, 6, IP_MF);
    set_checksum(&mut hdr[..hlen]);
    emit(buf, &hdr[..hlen], &dg[hlen..hlen + l0], out);

    let mut offset = 0usize;
    let mut prev_payload = l0;
    let mut ptr = hlen + l0;
    for (i, &li) in layout.iter().enumerate().skip(1) {
        let li = usize::from(li);
        let first_frag = offset == 0;
        // The previous fragment's header is copied, then fixed up.
        put16(&mut hdr, 2, (hlen + li) as u16);
        offset += prev_payload;
        let mut fo = ((offset >> 3) & 0xffff) as u16;
        if i + 1 < n {
            fo |= IP_MF;
        }
        put16(&mut hdr, 6, fo);
        set_checksum(&mut hdr[..hlen]);
        if first_frag && hlen > 20 {
            ip_options_fragment(&mut hdr[20..hlen]);
            set_checksum(&mut hdr[..hlen]);
        }
        emit(buf, &hdr[..hlen], &dg[ptr..ptr + li], out);
        ptr += li;
        prev_payload = li;
    }
    n as u32
}

/// `ip_frag_init` / `ip_frag_next` / `ip_frag_ipcb`: copy the datagram out in pieces.
fn slow_path<F: FnMut(&[u8])>(
    buf: &mut [u8],
    dg: &[u8],
    h: &Hdr,
    mtu_data: u32,
    df: bool,
    out: &mut F,
) -> u32 {
    let hlen = h.ihl;
    let mtu_data = mtu_data as usize;
    let mut hdr = [0u8; 60];
    hdr[..hlen].copy_from_slice(&dg[..hlen]);
    let mut left = h.tot_len - hlen;
    let mut ptr = hlen;
    let mut offset = usize::from(h.frag_off & IP_OFFSET) << 3;
    let not_last_frag = h.frag_off & IP_MF != 0;
    let mut count = 0u32;
    while left > 0 {
        let first_frag = offset == 0;
        let mut len = left.min(mtu_data);
        if len < left {
            len &= !7;
        }
        left -= len;
        // htons() of the unsigned offset >> 3: truncated to 16 bits, as the kernel does.
        let mut fo = ((offset >> 3) & 0xffff) as u16;
        if df {
            fo |= IP_DF;
        }
        if left > 0 || not_last_frag {
            fo |= IP_MF;
        }
        put16(&mut hdr, 6, fo);
        put16(&mut hdr, 2, (len + hlen) as u16);
        set_checksum(&mut hdr[..hlen]);
        emit(buf, &hdr[..hlen], &dg[ptr..ptr + len], out);
        count += 1;
        if first_frag && hlen > 20 {
            // ip_frag_ipcb: the options of the datagram are fixed once, after the first
            // fragment was copied; later fragments inherit them.
            ip_options_fragment(&mut hdr[20..hlen]);
        }
        ptr += len;
        offset += len;
    }
    count
}
