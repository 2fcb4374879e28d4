//! Tests of the coordination primitives in one process.
