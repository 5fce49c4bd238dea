//! Cross-crate tests of the hoist workspace.
