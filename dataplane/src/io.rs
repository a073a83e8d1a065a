//! What the pipeline needs from a packet I/O backend, as a trait the worker is generic over (static
//! dispatch: one monomorphised pipeline per backend, no virtual calls per packet).
//!
//! Frames live in chunks of one memory area (the UMEM for AF_XDP, a heap arena for the in-memory
//! and pcap backends) and move by descriptor: forwarding a frame hands its descriptor to another
//! port's TX staging, dropping it returns the chunk to the free list.

use crate::xsk::XdpDesc;

/// Frame storage and the outgoing side of one worker's ports.
pub trait FrameIo {
    /// `len` bytes at `addr` (a frame the worker holds), or None when out of range.
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]>;

    /// The same frame, writable (NAT and the TTL are rewritten in place).
    fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]>;

    /// From the frame at `addr` to the end of its chunk, writable: the frame and the room a
    /// longer rewrite of it may take (a NAT helper's).
    fn room_mut(&mut self, addr: u64) -> Option<&mut [u8]>;

    /// Takes a free chunk, lets `fill` write a new frame into it from the frame at
    /// (`src`, `src_len`), and returns the new frame's descriptor. `fill` returns the length
    /// written, or None (then the chunk goes back). Err when no chunk is free.
    fn build_from(
        &mut self,
        src: u64,
        src_len: u32,
        fill: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame>;

    /// Takes a free chunk and lets `fill` write a new frame into it (ARP requests): its
    /// descriptor, None when `fill` wrote nothing, Err when no chunk is free.
    fn alloc_frame(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame>;

    /// Returns a chunk (any address inside it) to the free list.
    fn free(&mut self, addr: u64);

    /// Stages `d` for transmission on `port` (of the queue being processed). The backend owns
    /// the frame from here: it sends it, or drops and counts it when the ring stays full.
    fn tx(&mut self, port: usize, d: XdpDesc);
}

/// No chunk was free (or the source frame was out of range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoFreeFrame;

/// The receive sources and housekeeping of a worker's backend (AF_XDP sockets, AF_PACKET
/// sockets), for the worker loop; generic, so each backend gets its own monomorphised loop.
pub trait PortIo: FrameIo {
    /// Receive sources (sockets) of this worker.
    fn sources(&self) -> usize;
    /// The port source `s` receives from.
    fn port_of(&self, s: usize) -> usize;
    /// Up to `out.len()` frames received on source `s`; makes `s`'s queue the TX queue.
    fn rx(&mut self, s: usize, out: &mut [XdpDesc]) -> usize;
    /// Makes queue slot 0 the TX queue (frames not tied to a receive queue).
    fn default_tx_queue(&mut self);
    /// A free frame filled by `read` (the TAP).
    fn alloc_read(&mut self, read: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<XdpDesc>;
    /// Sends staged frames.
    fn flush_tx(&mut self);
    /// Recycles completed transmissions.
    fn reap(&mut self);
    /// Gives the kernel frames to receive into.
    fn refill(&mut self);
    /// Frames staged or in flight on TX.
    fn in_tx(&self) -> u32;
    /// Gives up on staged frames (shutdown).
    fn drop_staged(&mut self);
    /// Frame accounting now.
    fn report(&mut self) -> crate::afxdp::ShutdownReport;
    /// The kernel's drop counters for this worker's sockets.
    fn kernel_stats(&self) -> crate::xsk::sys::XdpStatistics;
    /// Descriptors to sleep on (POLLIN) when idle.
    fn poll_fds(&self, out: &mut [i32]) -> usize;
}
