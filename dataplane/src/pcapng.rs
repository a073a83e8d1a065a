//! pcapng captures (the `pcap-file` crate's block codec), for the replay: each frame with the
//! interface it was seen on (its interface description block's `if_name`), and output files
//! with one interface per port.
//!
//! `pcap-file` 2.0 hands out enhanced packet timestamps as raw ticks (it ignores `if_tsresol`),
//! so this module applies each interface's resolution itself (default microseconds, as the
//! format says); files it writes say nanoseconds.

use crate::pcap::PcapSlice;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader, PcapNgWriter};
use pcap_file::DataLink;
use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

/// One frame of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedFrame {
    pub ts_ns: u64,
    /// The interface it was captured on (pcapng); None in a classic pcap.
    pub iface: Option<String>,
    pub data: Vec<u8>,
}

const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// Whether `bytes` start like a pcapng file.
pub fn is_pcapng(bytes: &[u8]) -> bool {
    bytes.starts_with(&PCAPNG_MAGIC)
}

/// Every frame of a classic pcap or a pcapng capture (Ethernet link type only).
pub fn read_capture(bytes: &[u8]) -> Result<Vec<CapturedFrame>, String> {
    if !is_pcapng(bytes) {
        let pcap = PcapSlice::new(bytes).map_err(|e| e.to_string())?;
        if pcap.linktype().is_raw_ip() {
            return Err("a raw-IP capture cannot enter a port (Ethernet frames only)".into());
        }
        return pcap
            .enumerate()
            .map(|(n, f)| {
                let f = f.map_err(|e| format!("frame {}: {e}", n + 1))?;
                Ok(CapturedFrame {
                    ts_ns: f.ts_ns,
                    iface: None,
                    data: f.data.to_vec(),
                })
            })
            .collect();
    }
    let mut r = PcapNgReader::new(bytes).map_err(|e| format!("pcapng: {e}"))?;
    // Per interface: name and nanoseconds per timestamp tick (as a ratio).
    let mut ifaces: Vec<(Option<String>, u64, u64)> = Vec::new();
    let mut out = Vec::new();
    while let Some(block) = r.next_block() {
        match block.map_err(|e| format!("pcapng block: {e}"))? {
            Block::SectionHeader(_) => ifaces.clear(),
            Block::InterfaceDescription(idb) => {
                if idb.linktype != DataLink::ETHERNET {
                    return Err(format!(
                        "pcapng interface {}: link type {:?}, not Ethernet",
                        ifaces.len(),
                        idb.linktype
                    ));
                }
                ifaces.push(interface(&idb));
            }
            Block::EnhancedPacket(epb) => {
                let n = out.len() + 1;
                let (name, mul, div) =
                    ifaces
                        .get(epb.interface_id as usize)
                        .cloned()
                        .ok_or_else(|| {
                            format!(
                                "frame {n}: interface {} was never described",
                                epb.interface_id
                            )
                        })?;
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                out.push(CapturedFrame {
                    ts_ns: raw.saturating_mul(mul) / div,
                    iface: name,
                    data: epb.data.into_owned(),
                });
            }
            Block::SimplePacket(spb) => {
                let name = ifaces.first().and_then(|i| i.0.clone());
                out.push(CapturedFrame {
                    ts_ns: 0,
                    iface: name,
                    data: spb.data.into_owned(),
                });
            }
            _ => {}
        }
    }
    Ok(out)
}

/// An interface's name and timestamp scale (ns = ticks * mul / div).
fn interface(idb: &InterfaceDescriptionBlock<'_>) -> (Option<String>, u64, u64) {
    let mut name = None;
    let mut resol = 6u8;
    for o in &idb.options {
        match o {
            InterfaceDescriptionOption::IfName(n) => name = Some(n.to_string()),
            InterfaceDescriptionOption::IfTsResol(r) => resol = *r,
            _ => {}
        }
    }
    let (mul, div) = if resol & 0x80 != 0 {
        (1_000_000_000, 1u64 << (resol & 0x7f).min(63))
    } else {
        match resol.min(19) {
            r @ 0..=9 => (10u64.pow(9 - u32::from(r)), 1),
            r => (1, 10u64.pow(u32::from(r) - 9)),
        }
    };
    (name, mul, div)
}

/// A pcapng file being written: one interface per name given, nanosecond timestamps.
pub struct PcapNgOut<W: Write> {
    w: PcapNgWriter<W>,
}

impl<W: Write> PcapNgOut<W> {
    pub fn new(w: W, ifaces: &[&str]) -> Result<PcapNgOut<W>, String> {
        let mut w = PcapNgWriter::new(w).map_err(|e| e.to_string())?;
        for name in ifaces {
            let idb = InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 0,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Owned(name.to_string())),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb).map_err(|e| e.to_string())?;
        }
        Ok(PcapNgOut { w })
    }

    /// Appends a frame seen on interface number `iface` at `ts_ns`.
    pub fn write(&mut self, iface: u32, ts_ns: u64, data: &[u8]) -> Result<(), String> {
        let epb = EnhancedPacketBlock {
            interface_id: iface,
            timestamp: Duration::from_nanos(ts_ns),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        self.w
            .write_pcapng_block(epb)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub fn into_inner(self) -> W {
        self.w.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_interface_and_nanosecond_time() {
        let mut out = PcapNgOut::new(Vec::new(), &["pwf0", "pwf1"]).unwrap();
        out.write(1, 1_700_000_000_123_456_789, &[1, 2, 3]).unwrap();
        out.write(0, 1_700_000_000_223_456_789, &[4; 70]).unwrap();
        let bytes = out.into_inner();
        assert!(is_pcapng(&bytes));
        let frames = read_capture(&bytes).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].iface.as_deref(), Some("pwf1"));
        assert_eq!(frames[0].ts_ns, 1_700_000_000_123_456_789);
        assert_eq!(frames[0].data, vec![1, 2, 3]);
        assert_eq!(frames[1].iface.as_deref(), Some("pwf0"));
        assert_eq!(frames[1].data.len(), 70);
    }

    #[test]
    fn microsecond_default_and_hostile_input() {
        let idb = InterfaceDescriptionBlock {
            linktype: DataLink::ETHERNET,
            snaplen: 0,
            options: vec![],
        };
        assert_eq!(interface(&idb), (None, 1000, 1));
        assert!(read_capture(&PCAPNG_MAGIC.repeat(3)).is_err());
        assert!(read_capture(b"not a capture at all").is_err());
    }
}
