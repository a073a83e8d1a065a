//! The pcap replay backend: frames of a capture enter the same batch pipeline as AF_XDP frames
//! (through the in-memory frame store), in bursts of frames that share a timestamp (so `limit`
//! sees each packet's own arrival time), and what the pipeline transmits on each port can be
//! written to a pcap of its own. `pollwall replay` uses it.

use crate::mem::MemIo;
use crate::pcap::{LinkType, PcapError, PcapWriter};
use crate::pipeline::{Pipeline, BATCH};
use crate::xsk::XdpDesc;
use std::io::Write;

/// One frame of a capture: timestamp (ns) and bytes.
pub type CapturedFrame<'a> = (u64, &'a [u8]);

/// Runs `frames` (all received on `port`) through `pipeline`. Frames sent out of port `p` go to
/// `out[p]` when there is a writer for it. Timestamps are taken relative to the first frame.
/// `max_len`: the longest frame of the capture (the frame store's chunks are sized for it, so
/// jumbo frames replay too).
pub fn replay<'a, W: Write>(
    pipeline: &mut Pipeline,
    frames: impl Iterator<Item = Result<CapturedFrame<'a>, PcapError>>,
    port: usize,
    max_len: usize,
    out: &mut [Option<PcapWriter<W>>],
) -> Result<u64, String> {
    let nports = out.len().max(2);
    // Room for replies (REJECT) too: at least 2 KiB.
    let frame_size = max_len.clamp(2048, 1 << 18) as u32;
    let mut io = MemIo::new(
        4 * BATCH as u32,
        frame_size,
        nports,
        out.iter().any(Option::is_some),
    );
    let mut burst: Vec<XdpDesc> = Vec::with_capacity(BATCH);
    let mut burst_ts = 0u64;
    let mut t0 = None;
    let mut n = 0u64;
    let mut flush = |io: &mut MemIo,
                     burst: &mut Vec<XdpDesc>,
                     ts: u64,
                     out: &mut [Option<PcapWriter<W>>]|
     -> Result<(), String> {
        if burst.is_empty() {
            return Ok(());
        }
        pipeline.rx_burst(io, port, burst, ts);
        burst.clear();
        for (p, w) in out.iter_mut().enumerate() {
            for f in io.take_sent(p) {
                if let Some(w) = w {
                    w.write_frame(ts, &f)
                        .map_err(|e| format!("writing port {p}'s capture: {e}"))?;
                }
            }
        }
        Ok(())
    };
    for f in frames {
        let (ts, bytes) = f.map_err(|e| format!("frame {}: {e}", n + 1))?;
        n += 1;
        let rel = ts.saturating_sub(*t0.get_or_insert(ts));
        if !burst.is_empty() && (rel != burst_ts || burst.len() == BATCH) {
            flush(&mut io, &mut burst, burst_ts, out)?;
        }
        burst_ts = rel;
        match io.inject(bytes) {
            Some(d) => burst.push(d),
            None => return Err(format!("frame {n}: longer than {frame_size} bytes")),
        }
    }
    flush(&mut io, &mut burst, burst_ts, out)?;
    Ok(n)
}

/// The link type the replay backend reads and writes.
pub const LINKTYPE: LinkType = LinkType::ETHERNET;

/// Receives each transmitted frame: port, timestamp, bytes.
pub type SentFrame<'s> = dyn FnMut(usize, u64, &[u8]) -> Result<(), String> + 's;

/// Runs frames that each arrive on their own port through `pipeline`, in capture order (a
/// burst is a run of frames on one port with one timestamp). `sent(port, ts, frame)` receives
/// every frame the pipeline transmits. Timestamps are the capture's own.
pub fn replay_ports<'a>(
    pipeline: &mut Pipeline,
    frames: impl Iterator<Item = (u64, usize, &'a [u8])>,
    nports: usize,
    max_len: usize,
    sent: &mut SentFrame<'_>,
) -> Result<u64, String> {
    replay_ports_each(pipeline, frames, nports, max_len, sent, None)
}

/// After each burst (of one frame when `each` is given, which then sees the pipeline).
pub type AfterFrame<'a> = dyn FnMut(&mut Pipeline) -> Result<(), String> + 'a;

/// [`replay_ports`], one frame per burst when `each` is given: it is called after each frame.
pub fn replay_ports_each<'a>(
    pipeline: &mut Pipeline,
    frames: impl Iterator<Item = (u64, usize, &'a [u8])>,
    nports: usize,
    max_len: usize,
    sent: &mut SentFrame<'_>,
    mut each: Option<&mut AfterFrame<'_>>,
) -> Result<u64, String> {
    let frame_size = max_len.clamp(2048, 1 << 18) as u32;
    let mut io = MemIo::new(4 * BATCH as u32, frame_size, nports.max(1), true);
    let mut burst: Vec<XdpDesc> = Vec::with_capacity(BATCH);
    let (mut burst_ts, mut burst_port) = (0u64, 0usize);
    let mut n = 0u64;
    let one_by_one = each.is_some();
    let mut flush = |io: &mut MemIo, burst: &mut Vec<XdpDesc>, ts: u64, port: usize| {
        if burst.is_empty() {
            return Ok(());
        }
        pipeline.rx_burst(io, port, burst, ts);
        burst.clear();
        for p in 0..nports {
            for f in io.take_sent(p) {
                sent(p, ts, &f)?;
            }
        }
        if let Some(f) = each.as_mut() {
            f(pipeline)?;
        }
        Ok::<(), String>(())
    };
    for (ts, port, bytes) in frames {
        n += 1;
        let full = burst.len() == BATCH || (one_by_one && !burst.is_empty());
        if !burst.is_empty() && (ts != burst_ts || port != burst_port || full) {
            flush(&mut io, &mut burst, burst_ts, burst_port)?;
        }
        (burst_ts, burst_port) = (ts, port);
        match io.inject(bytes) {
            Some(d) => burst.push(d),
            None => return Err(format!("frame {n}: longer than {frame_size} bytes")),
        }
    }
    flush(&mut io, &mut burst, burst_ts, burst_port)?;
    Ok(n)
}
