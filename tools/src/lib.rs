//! pollwall tools.
