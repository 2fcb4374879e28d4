//! Loom models of the coordination primitives.
