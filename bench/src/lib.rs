//! pollwall's benchmark support: fixtures and helpers shared by the benches in `benches/`.
