//! Sinks (placeholder while the client is built).
