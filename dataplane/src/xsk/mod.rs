//! AF_XDP sockets: UMEM, the fill/completion/RX/TX rings, and binding, as small safe types.
//!
//! Why our own ring layer rather than xdpilone (which DESIGN.md §7 measured working):
//! 1. Licence: xdpilone is EUPL-1.2 (copyleft); linking it would make every pollwall binary
//!    "MIT AND EUPL-1.2". Our own layer keeps the project MIT only.
//! 2. Fit: the worker needs batch pops into its own arrays, the real errno of TX kicks,
//!    `XDP_OPTIONS` (which mode the kernel chose), `XDP_STATISTICS`, `XDP_MAX_TX_SKB_BUDGET`,
//!    and exact frame accounting; xdpilone hides some of these (its `wake` drops errors) and
//!    adds behaviour we would work around (rollback on drop, a spin lock around the rings).
//! 3. Size: the kernel ABI is four structs and four mmaps; the ring arithmetic is unit-tested
//!    here without a kernel (the test plays the kernel side on the same memory).
//!
//! All `unsafe` of the dataplane's kernel interface lives in this module and in `bpf`.

pub mod ring;
pub mod socket;
pub mod sys;
pub mod umem;

pub use ring::{ConsRing, ProdRing};
pub use socket::{RingSizes, XskSocket, ZeroCopy};
pub use sys::XdpDesc;
pub use umem::Umem;
